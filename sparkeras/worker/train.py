"""The training task: one replica per Spark task, built by a factory.

Executor-side module. `make_train_task` copies plain values into the task
function; everything executor-only is imported inside it.
"""

import os
import socket

import pyarrow as pa

from sparkeras.worker.plan import SPLIT_COLUMN

SUMMARY_SCHEMA = pa.schema(
    [
        ("worker", pa.int32()),
        ("launch", pa.int32()),
        ("host", pa.string()),
        ("pid", pa.int64()),
        ("parent_pid", pa.int64()),
        ("samples", pa.int64()),
        ("validation_samples", pa.int64()),
        ("epochs_trained", pa.int32()),
        ("gpus", pa.list_(pa.string())),
        ("devices", pa.list_(pa.string())),
    ]
)
SUMMARY_DDL = (
    "worker int, launch int, host string, pid long, parent_pid long, "
    "samples long, validation_samples long, epochs_trained int, "
    "gpus array<string>, devices array<string>"
)


def _split(batches):
    """Splits a partition's Arrow batches into training and validation tables."""
    import pyarrow.compute as pc

    batches = list(batches)
    if not batches:
        return None, None
    table = pa.Table.from_batches(batches)
    if SPLIT_COLUMN not in table.column_names:
        return table, None
    is_validation = table[SPLIT_COLUMN]
    return table.filter(pc.invert(is_validation)), table.filter(is_validation)


def _run_epochs(plan, replica, exchange, client, worker, validation, start, reporter=None):
    """Trains from the registered resume point until the last epoch or a stop.

    `reporter`, a `ProgressReporter`, counts the epoch's progress for the
    driver; a stop the driver asks for within an epoch ends it early.
    With `plan.pruning`, a `sparkeras.worker.pruning` hook masks the kernels.
    """
    from sparkeras.worker.optimizer_state import optimizer_arrays
    from sparkeras.worker.pruning import make_pruning

    pruner = make_pruning(plan, replica.model, start, worker["worker"])

    rounds, steps = start["rounds_per_epoch"], start["steps_per_round"]
    epoch, first_round = start["epoch"], start["round"]
    trained = 0
    while epoch < plan.epochs:
        replica.start_epoch(epoch)
        if reporter is not None:
            done = min(first_round * steps, replica.num_batches)
            reporter.start_epoch(epoch, plan.batch_size, done,
                                 min(done * plan.batch_size, replica.num_samples))
        seen = 0
        for round_index in range(first_round, rounds):
            means, samples = replica.train_steps(round_index * steps, (round_index + 1) * steps,
                                                 progress=pruner.batch_hook(
                                                     reporter and reporter.batch))
            sums = {name: value * samples for name, value in means.items()}
            pruner.before_exchange(replica.model)
            stop = exchange.after_round(replica.model, epoch * rounds + round_index, samples,
                                        sums)
            pruner.after_exchange(replica.model)
            seen += samples
            if reporter is not None:
                reporter.round_done(samples, sums)
            # Synchronous: every worker of the round gets the same answer from the server.
            if stop or (reporter is not None and reporter.stop):
                break
        first_round = 0
        pruner.epoch_end(replica.model, epoch)
        report = {"epoch": epoch, **worker, "samples": seen}
        if reporter is not None:
            report.update(reporter.epoch_report())
        if validation is not None and len(validation[1]):
            val_logs = replica.evaluate(*validation)
            report["validation_samples"] = len(validation[1])
            report["validation_sums"] = {k: v * len(validation[1]) for k, v in val_logs.items()}
        decision, _ = client.call("epoch_end", report, optimizer_arrays(replica.model))
        _apply_decision(replica.model, decision)
        epoch += 1
        trained += 1
        if decision.get("stop"):
            break
    return trained


def _read_partition(batches, spec, client, worker):
    """The partition as `(x, y)` and validation `(x, y)` or None.

    A data problem (nulls, ragged arrays) is reported to the driver before it
    is raised, so the fit ends with the column's name rather than a trace.
    """
    from sparkeras.data import DataContentError, batches_to_arrays

    try:
        train_table, validation_table = _split(batches)
        train = batches_to_arrays(train_table if train_table is not None else [], spec)
        validation = None if validation_table is None else batches_to_arrays(validation_table, spec)
    except DataContentError as error:
        client.call("fail", {**worker, "message": str(error)}, [])
        raise
    return train, validation


def _register(client, replica, worker, identity):
    """Joins the fit; sets the global (or resumed) state on the replica's model."""
    from sparkeras.worker.optimizer_state import restore_optimizer

    start, tensors = client.call(
        "register",
        {**worker, **identity, "samples": replica.num_samples, "batches": replica.num_batches},
        [],
    )
    split = len(tensors) - start["optimizer_tensors"]
    replica.model.set_weights(tensors[:split])
    restore_optimizer(replica.model, tensors[split:])
    _apply_decision(replica.model, start)
    return start, tensors[:split]


def _apply_decision(model, decision):
    rate = decision.get("learning_rate")
    if rate is not None:
        model.optimizer.learning_rate.assign(rate)


def make_train_task(plan, model_broadcast):
    """Builds the function `mapInArrow` runs for each training partition.

    Args:
        plan: A `TrainPlan` of plain values.
        model_broadcast: Spark broadcast of the model's `.keras` bytes.

    Returns:
        A function from an iterator of Arrow record batches (one partition,
        training and validation rows marked by `SPLIT_COLUMN`) to an iterator
        yielding one summary batch with `SUMMARY_SCHEMA`.

    Example:
    >>> task = make_train_task(plan, spark.sparkContext.broadcast(model_bytes))
    >>> df.mapInArrow(task, SUMMARY_DDL, barrier=True).collect()
    """

    def train_partition(batches):
        from pyspark import TaskContext

        from sparkeras.ps import ParameterClient
        from sparkeras.worker import devices as task_devices
        from sparkeras.worker import parallel
        from sparkeras.worker.exchange import make_exchange
        from sparkeras.worker.model_io import model_from_bytes
        from sparkeras.worker.progress import ProgressReporter, quiet_worker
        from sparkeras.worker.replica import Replica
        from sparkeras.worker.runtime import prepare_process

        context = TaskContext.get()
        prepare_process(plan.backend, context.cpus())
        pinned = task_devices.plan_devices(
            task_devices.task_gpu_addresses(context), plan.devices_per_task
        )
        task_devices.pin_devices(plan.backend, pinned)
        names = task_devices.replica_devices(plan.backend, pinned)
        parallel.check_batch_size(plan.batch_size, len(names))
        worker = {"worker": context.partitionId()}
        identity = {"host": socket.gethostname(), "pid": os.getpid(), "parent_pid": os.getppid()}
        server = plan.server
        with (
            ParameterClient(server.host, server.port, server.secret, tls=server.tls) as client,
            quiet_worker(ProgressReporter(client, worker, plan.progress_interval_s)) as reporter,
        ):
            (x, y), validation = _read_partition(batches, plan.data, client, worker)
            # Under several devices the model is built, and trains, data-parallel.
            with parallel.scope(parallel.make_distribution(plan.backend, names)):
                model = model_from_bytes(model_broadcast.value, plan.custom_objects)
                replica = Replica(model, x, y, plan.batch_size,
                                  plan.seed * 100_003 + worker["worker"], shards=len(names))
                start, weights = _register(client, replica, worker, identity)
                worker["launch"] = start["launch"]
                exchange = make_exchange(plan.mode, client, worker["worker"], start["launch"])
                exchange.start(weights, start["version"])
                epochs_trained = _run_epochs(plan, replica, exchange, client, worker, validation,
                                             start, reporter)
        yield pa.RecordBatch.from_pylist(
            [{**worker, **identity, "samples": replica.num_samples,
              "validation_samples": len(validation[1]) if validation else 0,
              "epochs_trained": epochs_trained, "gpus": list(pinned.gpus), "devices": names}],
            schema=SUMMARY_SCHEMA,
        )

    return train_partition
