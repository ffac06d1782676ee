"""Runs one distributed fit: parameter server, barrier job and callbacks.

Driver-side module. The Spark job runs in a background thread while the
driver's main thread turns the parameter server's epoch-end events into Keras
callback calls, so `EarlyStopping`, `History` and friends see global logs and
their decisions reach every worker.
"""

import logging
import secrets
import threading
import uuid

logger = logging.getLogger("sparkeras")


def _learning_rate(model):
    """The optimizer's current rate, or None when a schedule drives it."""
    import keras

    optimizer = model.optimizer
    if isinstance(getattr(optimizer, "_learning_rate", None),
                  keras.optimizers.schedules.LearningRateSchedule):
        return None
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class _TrainingJob(threading.Thread):
    """Runs the barrier training job and reports its end to the coordinator."""

    def __init__(self, frame, task, schema, group, description, coordinator):
        super().__init__(name="sparkeras-training-job", daemon=True)
        self._frame = frame
        self._task = task
        self._schema = schema
        self._group = group
        self._description = description
        self._coordinator = coordinator
        self.summary = None
        self.error = None

    def run(self):
        context = self._frame.sparkSession.sparkContext
        context.setJobGroup(self._group, self._description, interruptOnCancel=True)
        try:
            rows = self._frame.mapInArrow(self._task, self._schema, barrier=True).collect()
            self.summary = sorted((row.asDict() for row in rows), key=lambda r: r["worker"])
        except BaseException as error:  # reported to the main thread
            self.error = error
            self._coordinator.abort("The sparkeras training job failed.")
        finally:
            self._coordinator.events.put(("job_done", None, {}, None))


def run_fit(model, frame, plan_values, callbacks, epochs, num_workers, steps, server_options):
    """Trains `model` on the prepared `frame` and returns `(summary, history)`.

    Args:
        model: The driver's compiled Keras model; it ends with the global weights.
        frame: DataFrame with the projected columns, one partition per worker.
        plan_values: Keyword values for `TrainPlan` other than `server`.
        callbacks: A `keras.callbacks.CallbackList` bound to `model`.
        epochs: Number of epochs.
        num_workers: Number of barrier tasks.
        steps: Steps per exchange round, None for once per epoch.
        server_options: dict with `host`, `port` and `tls` for the server.
    """
    from sparkeras.data import DataContentError
    from sparkeras.ps import ParameterServer
    from sparkeras.ps.coordinator import TrainingCoordinator
    from sparkeras.worker.model_io import model_to_bytes
    from sparkeras.worker.plan import ServerAddress, TrainPlan
    from sparkeras.worker.train import SUMMARY_DDL, make_train_task

    context = frame.sparkSession.sparkContext
    coordinator = TrainingCoordinator(
        num_workers, model.get_weights(), plan_values["mode"], steps, _learning_rate(model)
    )
    secret = secrets.token_bytes(32)
    weight_bytes = sum(w.nbytes for w in model.get_weights())
    server = ParameterServer(
        coordinator.handle,
        host=server_options["host"],
        secret=secret,
        port=server_options["port"],
        tls=server_options["tls"],
        max_message_bytes=weight_bytes + (1 << 20),
        max_connections=max(64, 4 * num_workers),
    )
    broadcast = context.broadcast(model_to_bytes(model))
    group = f"sparkeras-fit-{uuid.uuid4().hex[:12]}"
    job = None
    try:
        server.start()
        host, port = server.address
        plan = TrainPlan(server=ServerAddress(host, port, secret, server_options["tls"]),
                         **plan_values)
        description = f"sparkeras fit: {epochs} epochs on {num_workers} workers"
        job = _TrainingJob(frame, make_train_task(plan, broadcast), SUMMARY_DDL, group,
                           description, coordinator)
        model.stop_training = False
        callbacks.on_train_begin()
        callbacks.on_epoch_begin(0)
        job.start()
        _follow_epochs(model, callbacks, coordinator, epochs)
        job.join()
        if job.error is not None:
            if coordinator.failure is not None:
                raise DataContentError(coordinator.failure) from None
            raise job.error
        model.set_weights(coordinator.global_weights)
        callbacks.on_train_end()
        return job.summary
    except BaseException:
        coordinator.abort("The driver stopped the fit.")
        context.cancelJobGroup(group)
        raise
    finally:
        if job is not None and job.is_alive():
            job.join(timeout=30)
        server.stop()
        broadcast.destroy()


def _follow_epochs(model, callbacks, coordinator, epochs):
    """Runs callbacks for each global epoch end until the job reports done."""
    while True:
        kind, epoch, logs, weights = coordinator.events.get()
        if kind == "job_done":
            return
        if kind != "epoch_end":
            continue
        model.set_weights(weights)
        callbacks.on_epoch_end(epoch, logs)
        stop = bool(model.stop_training) or epoch + 1 >= epochs
        if not stop:
            callbacks.on_epoch_begin(epoch + 1)
        logger.info("epoch %d/%d: %s", epoch + 1, epochs, logs)
        coordinator.decide(stop, _learning_rate(model))
