"""The driver-side request handler of a fit: registration, rounds, epoch ends.

Driver-side module. The `ParameterServer` calls `TrainingCoordinator.handle`
from one thread per worker connection; the coordinator turns the requests
into global state (weights, rounds, per-epoch logs) and hands epoch ends to
the driver's main thread, which runs the Keras callbacks and decides whether
training goes on.
"""

import math
import queue
import threading

from sparkeras.ps.aggregation import AsyncStore, RoundBarrier, weighted_average


class TrainingCoordinator:
    """Holds the global state of one fit and answers the workers' requests.

    Args:
        num_workers: Number of training tasks taking part.
        initial_weights: The model's weights at the start of the fit.
        mode: "synchronous", "asynchronous" or "hogwild".
        steps_per_round: Steps between exchanges; None means once per epoch.
        learning_rate: The optimizer's learning rate to hand to workers, or
            None to leave theirs alone.

    Example:
    >>> coordinator = TrainingCoordinator(2, model.get_weights(), mode="synchronous")
    >>> server = ParameterServer(coordinator.handle, host="127.0.0.1", secret=secret)
    >>> kind, epoch, logs, weights = coordinator.events.get()
    """

    def __init__(self, num_workers, initial_weights, mode, steps_per_round=None,
                 learning_rate=None):
        self.num_workers = num_workers
        self.mode = mode
        self.events = queue.Queue()
        self.workers = {}
        self.failure = None
        self._steps_per_round = steps_per_round
        self._learning_rate = learning_rate
        self._weights = [w.copy() for w in initial_weights]
        self._lock = threading.Lock()
        self._decisions = queue.Queue()
        self._registration = RoundBarrier(num_workers, self._agree_on_rounds)
        self._rounds = RoundBarrier(num_workers, self._average)
        self._epochs = RoundBarrier(num_workers, self._end_epoch)
        self._store = (
            AsyncStore(initial_weights, lock=(mode == "asynchronous"))
            if mode != "synchronous"
            else None
        )
        self._handlers = {
            "register": self._register,
            "sync": self._sync,
            "push": self._push,
            "epoch_end": self._epoch_end,
            "fail": self._fail,
        }

    # Requests from workers (server threads) -------------------------------

    def handle(self, op, header, tensors):
        """Answers one worker request; the `ParameterServer` handler."""
        handler = self._handlers.get(op)
        if handler is None:
            raise ValueError(f"Unknown request {op!r}. Expected one of {sorted(self._handlers)}.")
        return handler(header, tensors)

    def _register(self, header, tensors):
        self.workers[header["worker"]] = dict(header)
        plan = self._registration.contribute(0, header["worker"], header["batches"])
        reply = {**plan, "epoch": 0, "version": 0, "learning_rate": self._learning_rate}
        return reply, self.global_weights

    def _agree_on_rounds(self, batches_by_worker):
        most = max(max(batches_by_worker.values()), 1)
        steps = most if self._steps_per_round is None else self._steps_per_round
        return {"rounds_per_epoch": math.ceil(most / steps), "steps_per_round": steps}

    def _sync(self, header, tensors):
        weights = self._rounds.contribute(
            header["round"], header["worker"], (tensors, header["samples"])
        )
        return {"round": header["round"]}, weights

    def _average(self, contributions):
        if sum(samples for _, samples in contributions.values()) > 0:
            with self._lock:
                self._weights = weighted_average(contributions)
        return self.global_weights

    def _push(self, header, tensors):
        push_id = (header["worker"], header["attempt"], header["round"])
        version, applied, reason = self._store.push(
            tensors, base_version=header["base_version"], push_id=push_id
        )
        version, weights = self._store.pull()
        return {"version": version, "applied": applied, "reason": reason}, weights

    def _epoch_end(self, header, tensors):
        return self._epochs.contribute(header["epoch"], header["worker"], header), []

    def _end_epoch(self, reports):
        epoch = next(iter(reports.values()))["epoch"]
        logs = _global_logs(reports.values(), "samples", "sums", "")
        logs.update(_global_logs(reports.values(), "validation_samples", "validation_sums", "val_"))
        self.events.put(("epoch_end", epoch, logs, self.global_weights))
        decision = self._decisions.get()
        if isinstance(decision, BaseException):
            raise decision
        return decision

    def _fail(self, header, tensors):
        self.abort(header["message"], failure=header["message"])
        return {}, []

    # Calls from the driver's main thread ----------------------------------

    @property
    def global_weights(self):
        """A copy of the current global weights."""
        if self._store is not None:
            return self._store.pull()[1]
        with self._lock:
            return [w.copy() for w in self._weights]

    def decide(self, stop, learning_rate=None):
        """Answers the pending epoch end: stop or go on, and the next rate."""
        self._decisions.put({"stop": bool(stop), "learning_rate": learning_rate})

    def abort(self, reason, failure=None):
        """Wakes every waiting worker with an error; the fit is over."""
        if failure is not None and self.failure is None:
            self.failure = failure
        for barrier in (self._registration, self._rounds, self._epochs):
            barrier.abort(reason)
        self._decisions.put(RuntimeError(reason))
        self.events.put(("aborted", None, {"reason": reason}, None))


def _global_logs(reports, count_key, sums_key, prefix):
    """Sample-weighted means of the workers' per-epoch sums."""
    total = sum(report.get(count_key, 0) for report in reports)
    if total == 0:
        return {}
    names = {name for report in reports for name in report.get(sums_key, {})}
    return {
        prefix + name: sum(report.get(sums_key, {}).get(name, 0.0) for report in reports) / total
        for name in sorted(names)
    }
