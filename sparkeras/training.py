"""Runs one distributed fit: parameter server, training job and callbacks.

Driver-side module. The Spark job runs in a background thread while the
driver's main thread turns the parameter server's epoch-end events into Keras
callback calls, so `EarlyStopping`, `History` and friends see global logs and
their decisions reach every worker. A failed training job is relaunched (up
to `max_attempts` launches) and resumes from the coordinator's state.

The training job is not a barrier stage, so it can read a coalesced frame
without a shuffle (`sparkeras.placement`). What a barrier stage gave, the
coordinator does: its tasks wait for one another at start (within
`start_timeout_s`), and a task that Spark retries after a failed attempt
makes the driver cancel the job and relaunch every worker, as a failed
barrier stage would.
"""

import logging
import secrets
import threading
import uuid
from dataclasses import dataclass, replace

from sparkeras.common.plan import ServerAddress, TrainPlan
from sparkeras.ps.aggregation import Staleness
from sparkeras.ps.events import EpochEnd, JobDone, Progress, TaskRetried, WarningReport
from sparkeras.session_access import cancel_job_group, set_job_group, ship_bytes
from sparkeras.task_errors import (
    describe_failure,
    deterministic_failure_message,
    worker_exception,
)

logger = logging.getLogger("sparkeras")

# A fit's tasks wait for one another at start; two fits sharing the slots could each
# hold some and wait for the rest. Fits from several threads of a driver run in turn.
_FITS_IN_TURN = threading.Lock()


@dataclass(frozen=True)
class ServerSettings:
    """Where the fit's parameter server listens, and how executors reach it.

    Attributes:
        host: The address to bind.
        port: The port to bind; 0 picks a free one.
        tls: A `sparkeras.ps.TLSConfig`, or None.
        advertised_host: The address the executors connect to when it
            differs from `host`, or None.
    """

    host: str
    port: int
    tls: object = None
    advertised_host: str = None


@dataclass(frozen=True)
class FitRun:
    """What `run_fit` needs besides the model, the data and the callbacks.

    Attributes:
        plan: The `TrainPlan` of the tasks, without its `server` (added once
            the parameter server listens).
        num_workers: Number of training tasks.
        server: A `ServerSettings`.
        max_attempts: Launches of the training job before giving up.
        checkpoint_dir: Where to write the state after each epoch, or None.
        resume_state: A loaded checkpoint to continue from, or None.
        workers: dict the coordinator fills, live, with each registered
            worker's identity (host, pid, launch).
        staleness: A `sparkeras.ps.aggregation.Staleness` for the
            asynchronous modes, or None.
        progress: A `sparkeras.progress.FitProgress` showing live progress,
            or None.
        batch_hooks: Whether the callbacks' `on_train_batch_end` runs on each
            progress report (some callback implements it).
        pruning: A `sparkeras.pruning.distributed.DriverPruning`, or None.
        start_timeout_s: Longest wait for every training task to start once
            the first has.
    """

    plan: TrainPlan
    num_workers: int
    server: ServerSettings
    max_attempts: int
    checkpoint_dir: str = None
    resume_state: dict = None
    workers: dict = None
    staleness: Staleness = None
    progress: object = None
    batch_hooks: bool = False
    pruning: object = None
    start_timeout_s: float = None


def _learning_rate(model):
    """The optimizer's current rate, or None when a schedule drives it."""
    import keras

    optimizer = model.optimizer
    if isinstance(getattr(optimizer, "_learning_rate", None),
                  keras.optimizers.schedules.LearningRateSchedule):
        return None
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class _TrainingJob(threading.Thread):
    """Runs (and relaunches) the training job; reports its end."""

    def __init__(self, frame, task, schema, group, description, coordinator, max_attempts):
        super().__init__(name="sparkeras-training-job", daemon=True)
        self._frame = frame
        self._task = task
        self._schema = schema
        self._group = group
        self._description = description
        self._coordinator = coordinator
        self._max_attempts = max_attempts
        self.stop_requested = False
        self.summary = None
        self.error = None
        self._restart = None  # (reason, crash) of a relaunch the coordinator asked for

    def relaunch_now(self, retried):
        """Cancels the running launch because Spark retried one of its tasks.

        `retried` is the coordinator's `TaskRetried` event. A stale one (an
        earlier launch's) or a second one for the same launch is ignored.
        """
        if retried.launch != self._coordinator.launch or self._restart is not None:
            return
        reason = (f"Spark retried worker {retried.worker}'s task (attempt "
                  f"{retried.attempt + 1}) after its previous attempt failed")
        crash = retried.crash
        self._restart = (reason + (f" with {crash}" if crash else ""), crash)
        cancel_job_group(self._frame.sparkSession, self._group)

    def run(self):
        set_job_group(self._frame.sparkSession, self._group, self._description)
        try:
            self.summary = self._launch_until_done()
        except BaseException as error:  # reported to the main thread
            self.error = error
            self._coordinator.abort("The sparkeras training job failed.")
        finally:
            self._coordinator.events.put(JobDone())

    def _launch_until_done(self):
        launch = 0
        while True:
            launch += 1
            try:
                rows = self._frame.mapInArrow(self._task, self._schema).collect()
                return sorted((row.asDict() for row in rows), key=lambda r: r["worker"])
            except Exception as error:
                if self._coordinator.start_error is not None:
                    raise self._coordinator.start_error from None
                if self._coordinator.failure is not None or self.stop_requested:
                    raise
                restart, self._restart = self._restart, None
                failure, cause = restart or (describe_failure(error), worker_exception(error))
                if cause is not None and _UNREACHABLE in cause and not self._coordinator.workers:
                    raise ConnectionError(
                        "The training tasks cannot reach the parameter server, so the fit stops "
                        f"now rather than relaunch them. {cause.split(': ', 1)[1]}"
                    ) from error
                unrecoverable = deterministic_failure_message(cause)
                if unrecoverable is not None:
                    raise RuntimeError(unrecoverable) from error
                if launch == self._max_attempts:
                    raise RuntimeError(
                        f"The sparkeras training job failed {launch} time(s); giving up. "
                        f"Last error: {failure}. Fix the cause, or allow "
                        "more launches with TrainingConfig(max_attempts=...). "
                        f"Received: max_attempts={self._max_attempts}"
                    ) from error
                epoch, round_in_epoch = self._coordinator.relaunch()
                set_job_group(
                    self._frame.sparkSession, self._group, f"{self._description} (launch "
                    f"{launch + 1}, from epoch {epoch + 1})",
                )
                logger.warning(
                    "Training job failed (launch %d of at most %d): %s. Relaunching; resuming "
                    "at epoch %d, round %d from the parameter server's state.",
                    launch, self._max_attempts, failure, epoch + 1,
                    round_in_epoch,
                )


# What a task raises when it cannot connect (sparkeras.ps.client); before any worker
# registered it means the address or port is wrong, which a relaunch cannot fix.
_UNREACHABLE = "Cannot reach the parameter server"


def run_fit(model, frame, callbacks, history, run):
    """Trains `model` on the prepared `frame`; returns the per-worker summary.

    Fits from several threads of this process run one at a time.

    Args:
        model: The driver's compiled Keras model; it ends with the global
            weights and optimizer state.
        frame: DataFrame with the projected columns, one partition per worker.
        callbacks: A `keras.callbacks.CallbackList` bound to `model`.
        history: The `keras.callbacks.History` inside `callbacks`.
        run: A `FitRun`.
    """
    with _FITS_IN_TURN:
        return _run_fit(model, frame, callbacks, history, run)


def _run_fit(model, frame, callbacks, history, run):
    from sparkeras.common.model_io import model_to_bytes
    from sparkeras.common.optimizer_state import restore_optimizer
    from sparkeras.data import DataContentError
    from sparkeras.ps import ParameterServer
    from sparkeras.ps.coordinator import TrainingCoordinator
    from sparkeras.worker.train import SUMMARY_DDL, make_train_task

    spark = frame.sparkSession
    start_epoch = _resume(model, history, run.resume_state)
    coordinator = TrainingCoordinator(
        run.num_workers, model.get_weights(), run.plan.mode, run.plan.steps_per_round,
        _learning_rate(model), start_epoch=start_epoch,
        optimizer_state=(run.resume_state or {}).get("optimizer_state"),
        staleness=run.staleness, start_timeout_s=run.start_timeout_s,
    )
    if run.workers is not None:
        coordinator.workers = run.workers
    if run.pruning is not None:
        coordinator.on_round = run.pruning.round_end
    secret = secrets.token_bytes(32)
    server = ParameterServer(
        coordinator.handle, host=run.server.host, secret=secret, port=run.server.port,
        tls=run.server.tls, max_message_bytes=_max_message_bytes(model),
        max_connections=max(64, 4 * run.num_workers),
    )
    broadcast = ship_bytes(spark, model_to_bytes(model), "model")
    secret_broadcast = ship_bytes(spark, secret, "secret")  # never in the task's pickle
    group = f"sparkeras-fit-{uuid.uuid4().hex[:12]}"
    job = None
    try:
        server.start()
        host, port = server.address
        host = run.server.advertised_host or host
        plan = replace(run.plan, server=ServerAddress(host, port, secret_broadcast, run.server.tls))
        description = f"sparkeras fit: {run.plan.epochs} epochs on {run.num_workers} workers"
        job = _TrainingJob(frame, make_train_task(plan, broadcast), SUMMARY_DDL, group,
                           description, coordinator, run.max_attempts)
        model.stop_training = False
        callbacks.on_train_begin()
        callbacks.on_epoch_begin(start_epoch)
        # A callback (LearningRateScheduler) may have set the first epoch's rate.
        coordinator.set_learning_rate(_learning_rate(model))
        job.start()
        _follow_epochs(model, callbacks, coordinator, history, run, job)
        job.join()
        if job.error is not None:
            if coordinator.failure is not None:
                raise DataContentError(coordinator.failure) from None
            raise job.error
        model.set_weights(coordinator.global_weights)
        if run.pruning is not None:
            model.set_weights(run.pruning.finish(coordinator.global_weights))
        restore_optimizer(model, coordinator.optimizer_state)
        callbacks.on_train_end()
        return job.summary
    except BaseException:
        if job is not None:
            job.stop_requested = True
        coordinator.abort("The driver stopped the fit.")
        cancel_job_group(spark, group)
        raise
    finally:
        if job is not None and job.is_alive():
            job.join(timeout=30)
        server.stop()
        broadcast.destroy()
        secret_broadcast.destroy()


# Keras' optimizers keep at most 5 values per trainable weight (Adam with
# amsgrad, use_ema and gradient_accumulation_steps), plus a few scalars.
_OPTIMIZER_SLOTS = 5
_OPTIMIZER_SCALARS = 8


def _max_message_bytes(model):
    """The largest request frame a worker sends (docs/wire-format.md, section 7).

    A frame is `FRAME_OVERHEAD` + JSON header (at most `max_header_bytes`) +
    payload, each tensor padded to 64 bytes: at most `sum(nbytes) + 64 *
    len(tensors)`. The largest request carries the weights (`sync`, `push`)
    or the optimizer state (`epoch_end`); an optimizer not built yet is
    bounded by `_OPTIMIZER_SLOTS` copies of the trainable weights.
    """
    from sparkeras.common.optimizer_state import optimizer_arrays
    from sparkeras.ps.codec import ALIGNMENT, DEFAULT_MAX_HEADER_BYTES, FRAME_OVERHEAD

    def payload(sizes):
        return sum(sizes) + ALIGNMENT * len(sizes)

    weights = model.get_weights()  # in the order of model.weights
    state = [array.nbytes for array in optimizer_arrays(model)]
    if not state:
        trainable = [a.nbytes for a, v in zip(weights, model.weights, strict=True) if v.trainable]
        state = trainable * _OPTIMIZER_SLOTS + [8] * _OPTIMIZER_SCALARS
    largest = max(payload([w.nbytes for w in weights]), payload(state))
    return FRAME_OVERHEAD + DEFAULT_MAX_HEADER_BYTES + largest


def _resume(model, history, state):
    """Loads a checkpoint's state into `model` and `history`; returns its epoch."""
    from sparkeras.common.optimizer_state import restore_optimizer

    if state is None:
        return 0
    model.set_weights(state["weights"])
    restore_optimizer(model, state["optimizer_state"])
    history.history = {key: list(values) for key, values in state["history"].items()}
    logger.warning("Resuming the fit after epoch %d from its checkpoint.", state["epochs_done"])
    return state["epochs_done"]


def _follow_epochs(model, callbacks, coordinator, history, run, job):
    """Runs the display and callbacks for each coordinator event until the job is done."""
    from sparkeras.progress import show_worker_warning

    last_batch_hook = None
    while True:
        match coordinator.events.get():
            case JobDone():
                return
            case TaskRetried() as retried:
                job.relaunch_now(retried)
            case WarningReport(item=item):
                show_worker_warning(item)
            case Progress(epoch=epoch, info=info):
                if _on_progress(epoch, info, model, callbacks, coordinator, run, last_batch_hook):
                    last_batch_hook = (epoch, info["steps"])
            case EpochEnd(epoch=epoch, logs=logs, weights=weights):
                _on_epoch_end(epoch, logs, weights, model, callbacks, coordinator, history, run)


def _on_progress(epoch, info, model, callbacks, coordinator, run, last_batch_hook):
    """Shows a global progress event and runs the batch-level hooks; True if they ran.

    The display (`run.progress`) gets every event; with `run.batch_hooks`,
    the callbacks' `on_train_batch_end(step, global running logs)` runs once
    per (epoch, steps), as Keras' loop calls it after each batch, and a
    `model.stop_training` it sets tells the workers to stop within the epoch.
    """
    if run.progress is not None:
        run.progress.update(epoch, info)
    if not run.batch_hooks or info["steps"] == 0 or (epoch, info["steps"]) == last_batch_hook:
        return False
    callbacks.on_train_batch_end(info["steps"] - 1, dict(info["logs"]))
    if model.stop_training:
        coordinator.request_stop()
    return True


def _on_epoch_end(epoch, logs, weights, model, callbacks, coordinator, history, run):
    """Runs the callbacks of a global epoch end and answers the coordinator: go on or stop."""
    from sparkeras.checkpoint import save_checkpoint
    from sparkeras.common.optimizer_state import restore_optimizer

    model.set_weights(weights)
    if run.pruning is not None:
        model.set_weights(run.pruning.epoch_end(weights))
    # Callbacks that save the model (ModelCheckpoint) get the optimizer's state too.
    restore_optimizer(model, coordinator.optimizer_state)
    if run.progress is not None:
        run.progress.epoch_end(epoch, logs)
    callbacks.on_epoch_end(epoch, logs)
    if run.checkpoint_dir is not None:
        save_checkpoint(run.checkpoint_dir, epoch + 1, weights, coordinator.optimizer_state,
                        history.history, run.pruning and run.pruning.state())
    stop = bool(model.stop_training) or epoch + 1 >= run.plan.epochs
    if not stop:
        callbacks.on_epoch_begin(epoch + 1)
    logger.info("epoch %d/%d: %s", epoch + 1, run.plan.epochs, logs)
    coordinator.decide(stop, _learning_rate(model))
