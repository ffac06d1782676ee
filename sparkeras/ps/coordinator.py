"""The driver-side request handler of a fit: registration, rounds, epoch ends.

Driver-side module. The `ParameterServer` calls `TrainingCoordinator.handle`
from one thread per worker connection; the coordinator turns the requests
into global state (weights, optimizer state, completed rounds, per-epoch
sums) and hands each epoch end to the driver's main thread, which runs the
Keras callbacks and decides whether training goes on.

The coordinator is the source of truth across task failures: when the driver
relaunches the training job (`relaunch`), contributions of the failed attempt
are dropped and the new workers resume after the last completed round.
"""

import logging
import math
import queue
import threading

from sparkeras.ps.aggregation import (
    AsyncStore,
    RoundBarrier,
    Staleness,
    check_same_structure,
    weighted_average,
)
from sparkeras.ps.events import EpochEnd, TaskRetried
from sparkeras.ps.progress_reports import ProgressTracker, check_count, check_metric_sums

logger = logging.getLogger(__name__)


class TrainingCoordinator:
    """Holds the global state of one fit and answers the workers' requests.

    Args:
        num_workers: Number of training tasks taking part.
        initial_weights: The weights the fit starts (or resumes) from.
        mode: "synchronous", "asynchronous" or "hogwild".
        steps_per_round: Steps between exchanges; None means once per epoch.
        learning_rate: The optimizer's learning rate to hand to workers, or
            None to leave theirs alone.
        start_epoch: First epoch to train (a resumed fit's next epoch).
        optimizer_state: Optimizer variables to resume from, or None.
        staleness: Asynchronous modes: a `Staleness` for the `AsyncStore`;
            None is `Staleness()`.
        start_timeout_s: Longest wait, from a worker's `start`, for every
            worker's task to start (the gang start the training job, not a
            barrier stage, leaves to the coordinator); None waits forever.

    Example:
    >>> coordinator = TrainingCoordinator(2, model.get_weights(), "synchronous")
    >>> server = ParameterServer(coordinator.handle, host="127.0.0.1", secret=secret)
    >>> event = coordinator.events.get()  # a Progress, WarningReport or EpochEnd
    """

    def __init__(self, num_workers, initial_weights, mode, steps_per_round=None,
                 learning_rate=None, start_epoch=0, optimizer_state=None, staleness=None,
                 start_timeout_s=None):
        self.num_workers = num_workers
        self.mode = mode
        self.events = queue.Queue()
        self.workers = {}
        self.failure = None
        self.start_error = None
        self.crashes = {}
        self.launch = 0
        self._start_timeout_s = start_timeout_s
        self._gang = RoundBarrier(num_workers, _started, timeout_s=start_timeout_s)
        self._launch_stage = None
        self._replaced_stages = set()
        self.optimizer_state = optimizer_state
        self._steps_per_round = steps_per_round
        self._learning_rate = learning_rate
        self._start_epoch = start_epoch
        self._rounds_per_epoch = None
        self._weights = [w.copy() for w in initial_weights]
        self._epoch_sums = {}
        self._lock = threading.Lock()
        self._decisions = queue.Queue()
        self._registration = RoundBarrier(num_workers, self._agree_on_rounds)
        self._rounds = None
        self._epochs = RoundBarrier(num_workers, self._end_epoch, start_round=start_epoch)
        staleness = staleness or Staleness()
        self._store = (
            AsyncStore(initial_weights, lock=(mode == "asynchronous"), damping=staleness.damping,
                       max_staleness=staleness.max_staleness)
            if mode != "synchronous"
            else None
        )
        self.progress = ProgressTracker(self.events)
        self._stop_requested = False
        self._stop_round = None
        # Synchronous: called as on_round(round_id, global weights, steps_per_round) once per
        # completed round, before any worker gets the average (pruning masks follow it).
        self.on_round = None
        self._handlers = {
            "start": self._start,
            "crashed": self._crashed,
            "register": self._register,
            "sync": self._sync,
            "push": self._push,
            "epoch_end": self._epoch_end,
            "fail": self._fail,
            "progress": self._progress,
        }

    # Requests from workers (server threads) -------------------------------

    def handle(self, op, header, tensors):
        """Answers one worker request; the `ParameterServer` handler."""
        handler = self._handlers.get(op)
        if handler is None:
            raise ValueError(f"Unknown request {op!r}. Expected one of {sorted(self._handlers)}.")
        return handler(header, tensors)

    def _start(self, header, tensors):
        """A task starts: first attempts wait for the whole gang; a retried one ends the launch.

        A Spark retry of a task (attempt 1 or more) means its earlier attempt
        failed while the other workers wait for it: the coordinator asks the
        driver for a relaunch (a `TaskRetried` event) and tells the task not
        to go on. Tasks of a replaced launch's stage are told the same.
        """
        worker = self._worker("start", header)
        attempt = check_count("start", header, "attempt")
        stage = check_count("start", header, "stage")
        if stage in self._replaced_stages:
            return {"go": False}, []
        if attempt > 0:
            self.events.put(TaskRetried(worker, attempt, self.launch, self.crashes.get(worker)))
            return {"go": False}, []
        self._launch_stage = stage
        try:
            self._gang.contribute(0, worker, None)
        except TimeoutError:
            arrived = self._gang.arrived
            if self.start_error is None:
                self.start_error = TimeoutError(
                    f"Only {arrived} of the fit's {self.num_workers} training tasks started "
                    f"within {self._start_timeout_s} s of the first: the cluster has fewer free "
                    "task slots than num_workers right now (another job may hold some, or an "
                    "executor was lost). Free task slots, lower num_workers, or wait longer with "
                    f"TrainingConfig(start_timeout_s=...). Received: num_workers="
                    f"{self.num_workers}, start_timeout_s={self._start_timeout_s}"
                )
                self.abort(str(self.start_error))
            raise
        return {"go": True}, []

    def _crashed(self, header, tensors):
        """A task's last words before it raises: the exception, kept for the driver."""
        worker = self._worker("crashed", header)
        if not isinstance(header.get("message"), str):
            raise ValueError(
                "A 'crashed' request needs message, the task's exception as a str. "
                f"Received: message={header.get('message')!r:.100}."
            )
        self.crashes[worker] = header["message"][:2000]
        return {}, []

    def _register(self, header, tensors):
        self._worker("register", header)
        check_count("register", header, "batches")
        self.workers[header["worker"]] = dict(header, launch=self.launch)
        self.progress.set_batches(header["worker"], header["batches"])
        plan = self._registration.contribute(0, header["worker"], header["batches"])
        epoch, round_in_epoch = self._resume_point()
        optimizer_state = self.optimizer_state or []
        reply = {**plan, "epoch": epoch, "round": round_in_epoch, "launch": self.launch,
                 "version": self._store.version if self._store else 0,
                 "learning_rate": self._learning_rate,
                 "optimizer_tensors": len(optimizer_state)}
        return reply, self.global_weights + list(optimizer_state)

    def _agree_on_rounds(self, batches_by_worker):
        if self._rounds_per_epoch is None:
            most = max(max(batches_by_worker.values()), 1)
            steps = most if self._steps_per_round is None else self._steps_per_round
            self._steps_per_round = steps
            self._rounds_per_epoch = math.ceil(most / steps)
            self._rounds = RoundBarrier(self.num_workers, self._average,
                                        start_round=self._start_epoch * self._rounds_per_epoch)
        return {"rounds_per_epoch": self._rounds_per_epoch,
                "steps_per_round": self._steps_per_round}

    def _resume_point(self):
        """The (epoch, round within it) a newly launched worker starts from."""
        done_epoch = self._epochs.last_completed_round
        epoch = self._start_epoch if done_epoch is None else done_epoch + 1
        if self._store is not None:
            return epoch, 0
        done_round = self._rounds.last_completed_round
        next_round = epoch * self._rounds_per_epoch if done_round is None else done_round + 1
        return epoch, max(0, next_round - epoch * self._rounds_per_epoch)

    def _sync(self, header, tensors):
        worker = self._check_exchange("sync", header)
        check_same_structure(self._weights, tensors, "the global weights",
                             f"worker {worker}'s sync")
        value = (header["round"], tensors, header["samples"], header.get("sums", {}))
        weights = self._rounds.contribute(header["round"], header["worker"], value)
        stop = self._stop_round is not None and header["round"] >= self._stop_round
        return {"round": header["round"], "stop": stop}, weights

    def _average(self, contributions):
        if self._stop_requested and self._stop_round is None:
            # Decided once per round, so every worker of the round gets the same answer.
            self._stop_round = max(round_id for round_id, _, _, _ in contributions.values())
        weighted = {worker: (tensors, samples)
                    for worker, (_, tensors, samples, _) in contributions.items()}
        with self._lock:
            if sum(samples for _, samples in weighted.values()) > 0:
                self._weights = weighted_average(weighted)
            if self.on_round is not None:
                round_id = max(round_id for round_id, _, _, _ in contributions.values())
                self.on_round(round_id, self._weights, self._steps_per_round)
            for round_id, _, samples, sums in contributions.values():
                self._add_sums(round_id // self._rounds_per_epoch, samples, sums)
            return [w.copy() for w in self._weights]

    def _push(self, header, tensors):
        self._check_exchange("push", header)
        check_count("push", header, "base_version")
        epoch = self._resume_point()[0]
        if header["round"] // self._rounds_per_epoch != epoch:
            raise ValueError(
                f"Worker {header['worker']} pushed for round {header['round']}, which is not in "
                f"the open epoch {epoch} (rounds {epoch * self._rounds_per_epoch} to "
                f"{(epoch + 1) * self._rounds_per_epoch - 1}). Received: round={header['round']}."
            )
        push_id = (header["worker"], header["launch"], header["round"])
        version, applied, reason = self._store.push(
            tensors, base_version=header["base_version"], push_id=push_id
        )
        if reason != "duplicate":
            with self._lock:
                self._add_sums(header["round"] // self._rounds_per_epoch, header["samples"],
                               header.get("sums", {}))
        version, weights = self._store.pull()
        return {"version": version, "applied": applied, "reason": reason,
                "stop": self._stop_requested}, weights

    def _add_sums(self, epoch, samples, sums):
        totals = self._epoch_sums.setdefault(epoch, {"samples": 0, "sums": {}})
        totals["samples"] += samples
        for name, value in sums.items():
            totals["sums"][name] = totals["sums"].get(name, 0.0) + value

    def _epoch_end(self, header, tensors):
        self._worker("epoch_end", header)
        self._current_launch("epoch_end", header)
        for name in ("epoch", "samples"):
            check_count("epoch_end", header, name)
        if "validation_samples" in header:
            check_count("epoch_end", header, "validation_samples")
        check_metric_sums("epoch_end", header, "validation_sums")
        self.progress.take_warnings(header)
        return self._epochs.contribute(header["epoch"], header["worker"], (header, tensors)), []

    def _end_epoch(self, reports):
        headers = [header for header, _ in reports.values()]
        epoch = headers[0]["epoch"]
        with self._lock:
            totals = self._epoch_sums.pop(epoch, {"samples": 0, "sums": {}})
        logs = _global_logs([totals], "samples", "sums", "")
        logs.update(_global_logs(headers, "validation_samples", "validation_sums", "val_"))
        state = {worker: (tensors, max(header["samples"], 1))
                 for worker, (header, tensors) in reports.items() if tensors}
        if state:
            self.optimizer_state = weighted_average(state)
        self.progress.epoch_done(epoch, headers, logs)
        self.events.put(EpochEnd(epoch, logs, self.global_weights))
        decision = self._decisions.get()
        if isinstance(decision, BaseException):
            raise decision
        return decision

    def _fail(self, header, tensors):
        self._worker("fail", header)
        if not isinstance(header.get("message"), str):
            raise ValueError(
                "A 'fail' request needs message, the worker's error as a str. "
                f"Received: message={header.get('message')!r:.100}."
            )
        self.abort(header["message"], failure=header["message"])
        return {}, []

    def _progress(self, header, tensors):
        """A worker's progress report (and warnings): answered at once, never waits."""
        self._worker("progress", header)
        self.progress.report(header, self.launch)
        return {"stop": self._stop_requested}, []

    # Checks of request headers (a buggy or hostile peer knows the secret too)

    def _worker(self, op, header):
        """The request's worker id, an int from 0 to num_workers - 1."""
        return check_count(op, header, "worker", high=self.num_workers - 1)

    def _current_launch(self, op, header):
        """Refuses a request from a launch of the training job that was replaced."""
        launch = check_count(op, header, "launch")
        if launch != self.launch:
            raise ValueError(
                f"Worker {header['worker']}'s {op!r} comes from launch {launch} of the training "
                f"job, but launch {self.launch} replaced it; its task should have ended. "
                f"Received: launch={launch}."
            )

    def _check_exchange(self, op, header):
        """Checks a `sync` or `push` header before anything is counted; returns the worker."""
        expected = "sync" if self.mode == "synchronous" else "push"
        if op != expected:
            raise ValueError(
                f"A {self.mode} fit exchanges weights with {expected!r} requests. "
                f"Received: op={op!r}."
            )
        if self._rounds_per_epoch is None:
            raise ValueError(
                f"No {op!r} is accepted before every worker registered. Received: {op!r} from "
                f"worker={header.get('worker')!r:.100}."
            )
        worker = self._worker(op, header)
        self._current_launch(op, header)
        check_count(op, header, "round")
        check_count(op, header, "samples")
        check_metric_sums(op, header, "sums")
        return worker

    # Calls from the driver's main thread ----------------------------------

    @property
    def steps_per_epoch(self):
        """Steps of one replica per epoch once the workers agreed on rounds, else None."""
        if self._rounds_per_epoch is None:
            return None
        return self._rounds_per_epoch * self._steps_per_round

    @property
    def global_weights(self):
        """A copy of the current global weights."""
        if self._store is not None:
            return self._store.pull()[1]
        with self._lock:
            return [w.copy() for w in self._weights]

    def set_learning_rate(self, learning_rate):
        """Sets the rate workers get when they register (None: leave theirs alone)."""
        self._learning_rate = learning_rate

    def request_stop(self):
        """Asks the workers to stop within the epoch (a batch-level callback set
        `model.stop_training`): replies to progress reports and exchanges say so."""
        self._stop_requested = True

    def decide(self, stop, learning_rate=None):
        """Answers the pending epoch end: stop or go on, and the next rate."""
        self._decisions.put({"stop": bool(stop), "learning_rate": learning_rate})

    def relaunch(self):
        """Prepares for a new launch of the training job after a failed one.

        Drops what the failed attempt contributed to rounds that did not
        complete; the new workers register again and resume after the last
        completed round (synchronous) or at the start of the unfinished
        epoch (asynchronous, whose pushes are idempotent per launch).

        Returns:
            (epoch, round within it) the new launch resumes from.
        """
        self.launch += 1
        replaced = "A newer launch of the training job replaced this one."
        self._registration.abort(replaced)
        self._registration = RoundBarrier(self.num_workers, self._agree_on_rounds)
        self._gang.abort(replaced)
        self._gang = RoundBarrier(self.num_workers, _started, timeout_s=self._start_timeout_s)
        if self._launch_stage is not None:
            self._replaced_stages.add(self._launch_stage)
        self._launch_stage = None
        self.crashes.clear()
        self._epochs.discard_open_round()
        if self._rounds is not None:
            self._rounds.discard_open_round()
        epoch, round_in_epoch = self._resume_point() if self._rounds_per_epoch else (0, 0)
        if self._store is not None:
            with self._lock:
                self._epoch_sums.pop(epoch, None)
        return epoch, round_in_epoch

    def abort(self, reason, failure=None):
        """Wakes every waiting worker with an error; the fit is over."""
        if failure is not None and self.failure is None:
            self.failure = failure
        for barrier in (self._gang, self._registration, self._rounds, self._epochs):
            if barrier is not None:
                barrier.abort(reason)
        self._decisions.put(RuntimeError(reason))


def _started(_):
    """The gang start's reduce: nothing to combine, every task may go."""


def _global_logs(reports, count_key, sums_key, prefix):
    """Sample-weighted means of the per-epoch sums in `reports`."""
    total = sum(report.get(count_key, 0) for report in reports)
    if total == 0:
        return {}
    names = {name for report in reports for name in report.get(sums_key, {})}
    return {
        prefix + name: sum(report.get(sums_key, {}).get(name, 0.0) for report in reports) / total
        for name in sorted(names)
    }
