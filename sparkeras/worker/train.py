"""The training task: one replica per Spark task, built by a factory.

Executor-side module. `make_train_task` copies plain values into the task
function; everything executor-only is imported inside it.
"""

import contextlib
import itertools
import os
import socket
import time

import pyarrow as pa

# data="auto" keeps a partition in memory when its projected Arrow data is at
# most this many bytes, else streams it (docs/data-path.md).
AUTO_MEMORY_BYTES = 128 * 2**20
# A worker that waits for input more than this share of its time is warned.
INPUT_BOUND_SHARE = 0.25
# ... and waited at least this long in the epoch (shorter waits are not worth acting on).
INPUT_BOUND_MIN_WAIT_S = 1.0
# Steps of a round that spans the whole epoch, for a worker that streams.
_WHOLE_EPOCH = 2**62

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
        ("data", pa.string()),
        ("peak_rss_anon_mb", pa.float64()),
        ("rows_read", pa.int64()),
        ("bytes_read", pa.int64()),
        ("bytes_spilled", pa.int64()),
        ("input_wait_s", pa.float64()),
        ("train_s", pa.float64()),
        ("warm_model", pa.bool_()),
    ]
)
SUMMARY_DDL = (
    "worker int, launch int, host string, pid long, parent_pid long, "
    "samples long, validation_samples long, epochs_trained int, "
    "gpus array<string>, devices array<string>, data string, peak_rss_anon_mb double, "
    "rows_read long, bytes_read long, bytes_spilled long, input_wait_s double, train_s double, "
    "warm_model boolean"
)


def _split(batches):
    """Splits a partition's Arrow batches into training and validation tables."""
    from sparkeras.worker.input_stream import split_validation

    batches = list(batches)
    if not batches:
        return None, None
    return split_validation(pa.Table.from_batches(batches))


def _choose_input(batches, mode, stats):
    """("memory", list of batches) or ("stream", iterator of batches) for the partition.

    "auto" reads ahead until the partition ends (memory) or its Arrow data
    passes `AUTO_MEMORY_BYTES` (stream: the batches read ahead come first).
    """
    batches = iter(batches)
    held = []
    if mode != "stream":
        size = 0
        for batch in batches:
            held.append(batch)
            size += batch.nbytes
            if mode == "auto" and size > AUTO_MEMORY_BYTES:
                break
        else:
            stats.rows_read = sum(batch.num_rows for batch in held)
            stats.bytes_read = size
            return "memory", held
    return "stream", itertools.chain(held, batches)


def _run_epochs(plan, replica, exchange, client, worker, validate, start, reporter=None,
                stats=None):
    """Trains from the registered resume point until the last epoch or a stop.

    `validate()` returns the validation metrics and their count, or None
    (`validate` may be None). `reporter`, a `ProgressReporter`, counts the
    epoch's progress for the driver; a stop the driver asks for within an
    epoch ends it early. `stats`, an `InputStats`, gets the training time
    (input waits excluded); an epoch that waited for input more than
    `INPUT_BOUND_SHARE` of its time sends the driver a warning.
    With `plan.pruning`, a `sparkeras.worker.pruning` hook masks the kernels.
    """
    from sparkeras.common.optimizer_state import optimizer_arrays
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
        epoch_times = _times(stats)
        for round_index in range(first_round, rounds):
            waited, started = _times(stats)[0], time.perf_counter()
            means, samples = replica.train_steps(round_index * steps, (round_index + 1) * steps,
                                                 progress=pruner.batch_hook(
                                                     reporter and reporter.batch))
            if stats is not None:
                stats.train_s += time.perf_counter() - started - (stats.input_wait_s - waited)
                stats.sample_memory()
            sums = {name: value * samples for name, value in means.items()}
            pruner.before_exchange(replica.model)
            stop = exchange.after_round(replica.model, epoch * rounds + round_index, samples,
                                        sums)
            pruner.after_exchange(replica.model, epoch * rounds + round_index)
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
            _warn_if_input_bound(reporter, epoch, epoch_times, _times(stats))
            report.update(reporter.epoch_report())
        validation = validate() if validate is not None else None
        if validation is not None:
            val_logs, count = validation
            report["validation_samples"] = count
            report["validation_sums"] = {k: v * count for k, v in val_logs.items()}
        decision, _ = client.call("epoch_end", report, optimizer_arrays(replica.model))
        _apply_decision(replica.model, decision)
        epoch += 1
        trained += 1
        if decision.get("stop"):
            break
    return trained


def _times(stats):
    """(input wait, training) seconds so far; zeros without stats."""
    return (0.0, 0.0) if stats is None else (stats.input_wait_s, stats.train_s)


def _warn_if_input_bound(reporter, epoch, before, after):
    waited, trained = after[0] - before[0], after[1] - before[1]
    if waited >= INPUT_BOUND_MIN_WAIT_S and waited > INPUT_BOUND_SHARE * (waited + trained):
        reporter.add_warning(
            "InputBound",
            f"In epoch {epoch + 1} this worker waited for input {waited:.1f} s and trained "
            f"{trained:.1f} s: more than {INPUT_BOUND_SHARE:.0%} of its time went to reading "
            "and decoding. Cache or persist the DataFrame, use fewer, cheaper columns, or a "
            "larger TrainingConfig(shuffle_buffer=...).",
        )


def _read_partition(batches, spec):
    """The partition as `(x, y)` and validation `(x, y)` or None."""
    from sparkeras.data import batches_to_arrays

    train_table, validation_table = _split(batches)
    train = batches_to_arrays(train_table if train_table is not None else [], spec)
    validation = None if validation_table is None else batches_to_arrays(validation_table, spec)
    return train, validation


def _start(client, worker, context):
    """Tells the coordinator this task started; returns once every worker's task has.

    Raises RuntimeError when Spark retried this task after a failed attempt:
    the driver relaunches the whole training job instead (docs/data-path.md).
    """
    reply, _ = client.call("start", {**worker, "attempt": context.attemptNumber(),
                                     "stage": context.stageId()}, [])
    if not reply["go"]:
        raise RuntimeError(
            f"Spark retried worker {worker['worker']}'s training task (attempt "
            f"{context.attemptNumber() + 1}); the driver relaunches every worker instead, "
            "from the parameter server's state."
        )


def _report_crash(client, worker, error):
    """Sends the task's exception to the coordinator before the task raises it."""
    with contextlib.suppress(Exception):  # the report is a courtesy; the error still raises
        client.call("crashed", {**worker, "message": f"{type(error).__name__}: {error}"}, [])


def _register(client, replica, worker, identity):
    """Joins the fit; sets the global (or resumed) state on the replica's model."""
    from sparkeras.common.optimizer_state import restore_optimizer

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


def _memory_validation(replica, validation):
    """`validate` for an in-memory replica: its metrics on the held rows, or None."""
    if validation is None or not len(validation[1]):
        return None
    return lambda: (replica.evaluate(*validation), len(validation[1]))


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
    >>> df.mapInArrow(task, SUMMARY_DDL).collect()
    """

    def train_partition(batches):
        from pyspark import TaskContext

        from sparkeras.data import DataContentError
        from sparkeras.ps import ParameterClient
        from sparkeras.worker import parallel, warm_model
        from sparkeras.worker.exchange import make_exchange
        from sparkeras.worker.input_stream import InputStats, TrainingInput
        from sparkeras.worker.progress import ProgressReporter, quiet_worker
        from sparkeras.worker.replica import Replica
        from sparkeras.worker.stream_replica import StreamReplica
        from sparkeras.worker.task_setup import set_up_task

        context = TaskContext.get()
        setup = set_up_task(plan.backend, plan.devices_per_task)
        names, distribution = setup.replicas()
        parallel.check_batch_size(plan.batch_size, len(names))
        worker = {"worker": context.partitionId()}
        identity = {"host": socket.gethostname(), "pid": os.getpid(), "parent_pid": os.getppid()}
        server = plan.server
        stats = InputStats()
        stream = None
        with (
            ParameterClient(server.host, server.port, server.secret, tls=server.tls) as client,
            quiet_worker(ProgressReporter(client, worker, plan.progress_interval_s)) as reporter,
        ):
            _start(client, worker, context)
            try:
                kind, source = _choose_input(batches, plan.data_mode, stats)
                seed = plan.seed * 100_003 + worker["worker"]
                if kind == "memory":
                    started = time.perf_counter()
                    (x, y), validation = _read_partition(source, plan.data)
                    stats.input_wait_s += time.perf_counter() - started
                else:
                    stream = TrainingInput(source, plan.data, plan.batch_size, seed,
                                           plan.shuffle_buffer, shards=len(names), stats=stats)
                    if plan.steps_per_round is not None:
                        stream.drain()  # rounds of steps are agreed from every worker's count
                    else:
                        stream.start_epoch(0)  # reads ahead while the model loads
                stats.sample_memory()
                # Under several devices the model is built, and trains, data-parallel.
                with parallel.scope(distribution):
                    model, warm = warm_model.take(model_broadcast.value, plan.custom_objects,
                                                  reusable=distribution is None)
                    if stream is None:
                        replica = Replica(model, x, y, plan.batch_size, seed, shards=len(names))
                        validate = _memory_validation(replica, validation)
                    else:
                        replica = StreamReplica(model, stream, plan.batch_size, len(names))
                        validate = replica.validate
                    start, weights = _register(client, replica, worker, identity)
                    if stream is not None and start["rounds_per_epoch"] == 1:
                        start = {**start, "steps_per_round": _WHOLE_EPOCH}
                    worker["launch"] = start["launch"]
                    exchange = make_exchange(plan.mode, client, worker["worker"], start["launch"])
                    exchange.start(weights, start["version"])
                    epochs_trained = _run_epochs(plan, replica, exchange, client, worker,
                                                 validate, start, reporter, stats)
                warm_model.keep(model, model_broadcast.value, plan.custom_objects,
                                reusable=distribution is None)
            except DataContentError as error:
                # Reported before it is raised: the fit ends naming the column, not a trace.
                client.call("fail", {**worker, "message": str(error)}, [])
                raise
            except Exception as error:
                _report_crash(client, worker, error)
                raise
            finally:
                if stream is not None:
                    stream.close()
        validation_samples = (stream.validation_samples if stream is not None
                              else len(validation[1]) if validation else 0)
        yield pa.RecordBatch.from_pylist(
            [{**worker, **identity, "samples": replica.num_samples,
              "validation_samples": validation_samples,
              "epochs_trained": epochs_trained, "gpus": list(setup.pinned.gpus), "devices": names,
              "data": kind, **stats.as_dict(), "warm_model": warm}],
            schema=SUMMARY_SCHEMA,
        )

    return train_partition
