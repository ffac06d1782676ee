"""The workers' progress reports and warnings, as the parameter server takes them.

Driver-side module (the parameter server's threads), except `warning_key`,
which is neutral: the executors' `sparkeras.worker.progress` and this module
use it to tell warnings apart alike. Workers send small `progress` reports
(steps, samples, metric sums so far in the epoch); `ProgressTracker` checks
them, sums them over the workers and queues a `Progress` event for the
driver's main thread. It also queues each distinct worker
warning once. The `check_*` functions refuse a malformed request header
before anything counts it (a buggy or hostile peer knows the secret too).

Example:
>>> tracker = ProgressTracker(coordinator.events)
>>> tracker.set_batches(worker=0, batches=40)
>>> tracker.report({"worker": 0, "epoch": 0, "steps": 10, "samples": 320, ...}, launch=0)
"""

import re
import threading

from sparkeras.ps.events import Progress, WarningReport

__all__ = [
    "ProgressTracker",
    "check_count",
    "check_metric_sums",
    "check_progress",
    "check_warnings",
    "warning_key",
]

_MAX_WARNINGS = 100
_VARYING = re.compile(r"0x[0-9a-fA-F]+|\d+")


def warning_key(category, message):
    """What tells two warnings apart: addresses and counts in the message do not.

    Example:
    >>> warning_key("UserWarning", "array at 0x7f3a has 12 rows")
    ('UserWarning', 'array at # has # rows')
    """
    return category, _VARYING.sub("#", message)


class ProgressTracker:
    """Sums the workers' progress reports into global progress events.

    Args:
        events: The coordinator's queue read by the driver's main thread.

    Example:
    >>> tracker = ProgressTracker(coordinator.events)
    >>> tracker.set_batches(worker=0, batches=40)
    >>> tracker.report({"worker": 0, "epoch": 0, "steps": 10, "samples": 320, ...}, launch=0)
    """

    def __init__(self, events):
        self._events = events
        self._lock = threading.Lock()
        self._batches = {}
        self._reports = {}
        self._warned = set()

    def set_batches(self, worker, batches):
        """Records a worker's batches per epoch (known at its registration)."""
        with self._lock:
            self._batches[worker] = batches

    @property
    def total_steps(self):
        """Steps of one epoch summed over the workers."""
        with self._lock:
            return sum(self._batches.values())

    def report(self, header, launch):
        """Takes one worker's `progress` request; queues the global progress event."""
        self.take_warnings(header)
        if "epoch" not in header:
            return
        check_progress(header)
        if header.get("launch") != launch:
            return  # a task of a replaced launch: its counts no longer hold
        with self._lock:
            self._reports[header["worker"]] = header
            reports = [
                r
                for r in self._reports.values()
                if r["epoch"] == header["epoch"] and r.get("launch") == launch
            ]
            info = self._info(reports)
        self._events.put(Progress(header["epoch"], info))

    def epoch_done(self, epoch, headers, logs):
        """Queues the final progress event of `epoch` from the workers' epoch-end reports."""
        reports = [
            {
                "steps": _number_or_zero(h.get("steps")),
                "samples": h.get("samples", 0),
                "seconds": _number_or_zero(h.get("seconds")),
            }
            for h in headers
        ]
        with self._lock:
            self._reports = {w: r for w, r in self._reports.items() if r["epoch"] > epoch}
            info = self._info(reports)
        info.update(final=True, logs={k: v for k, v in logs.items() if not k.startswith("val_")})
        self._events.put(Progress(epoch, info))

    def take_warnings(self, header):
        """Queues each warning of a request not seen before in this fit."""
        for item in check_warnings(header)[:_MAX_WARNINGS]:
            key = warning_key(item["category"], item["message"])
            with self._lock:
                if key in self._warned or len(self._warned) >= _MAX_WARNINGS:
                    continue
                self._warned.add(key)
            self._events.put(WarningReport(dict(item, worker=header.get("worker"))))

    def _info(self, reports):
        steps = sum(r["steps"] for r in reports)
        samples = sum(r["samples"] for r in reports)
        rate = sum(r["samples"] / r["seconds"] for r in reports if r["seconds"] > 0)
        metric_samples = sum(r.get("metric_samples", 0) for r in reports)
        names = {name for r in reports for name in r.get("sums", {})}
        logs = (
            {
                name: sum(r.get("sums", {}).get(name, 0.0) for r in reports) / metric_samples
                for name in sorted(names)
            }
            if metric_samples
            else {}
        )
        return {
            "steps": steps,
            "total_steps": max(sum(self._batches.values()), steps),
            "samples": samples,
            "samples_per_s": rate,
            "logs": logs,
            "seconds": max((r["seconds"] for r in reports), default=0.0),
        }


def _number_or_zero(value):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    return value if ok else 0


def check_count(op, header, name, high=None):
    """`header[name]` if it is an int from 0 (to `high`), else ValueError naming it.

    Example:
    >>> check_count("sync", {"round": 3}, "round")
    3
    """
    value = header.get(name)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < 0
        or (high is not None and value > high)
    ):
        bound = "of 0 or more" if high is None else f"from 0 to {high}"
        raise ValueError(
            f"A {op!r} request needs {name}, an int {bound}. Received: {name}={value!r:.100}."
        )
    return value


def check_progress(header):
    """Refuses a `progress` request's counts unless each is a number of 0 or more.

    Example:
    >>> check_progress({"worker": 0, "epoch": 0, "steps": 3, "samples": 96,
    ...                 "metric_samples": 96, "seconds": 0.4, "sums": {"loss": 70.1}})
    """
    for name in ("worker", "epoch", "steps", "samples", "metric_samples"):
        value = header.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"A 'progress' request needs {name}, an int of 0 or more. "
                f"Received: {name}={value!r:.100}."
            )
    seconds = header.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ValueError(
            f"A 'progress' request needs seconds, a number of 0 or more. "
            f"Received: seconds={seconds!r:.100}."
        )
    check_metric_sums("progress", header, "sums")


def check_warnings(header):
    """A request's `warnings` (optional): a list of dicts of str category and message.

    Example:
    >>> check_warnings({"warnings": [{"category": "UserWarning", "message": "slow"}]})
    [{'category': 'UserWarning', 'message': 'slow'}]
    """
    items = header.get("warnings") or []
    if not isinstance(items, list):
        raise ValueError(f"warnings must be a list. Received: warnings={items!r:.100}.")
    for item in items[:_MAX_WARNINGS]:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("message"), str)
            and isinstance(item.get("category"), str)
        ):
            raise ValueError(
                "Each warning must be a dict of str category and message. "
                f"Received: {item!r:.100}."
            )
    return items


def check_metric_sums(op, header, name):
    """Refuses `header[name]` (optional) unless it maps metric names to numbers.

    Example:
    >>> check_metric_sums("push", {"sums": {"loss": 12.5}}, "sums")
    """
    value = header.get(name, {})
    if not (
        isinstance(value, dict)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values())
    ):
        raise ValueError(
            f"A {op!r} request's {name} must map metric names to numbers. "
            f"Received: {name}={value!r:.100}."
        )
