"""What a training task tells the driver while it trains: progress and warnings.

Executor-side module. A `ProgressReporter` counts the task's steps, samples
and metric sums within the epoch and, at most every `interval_s` seconds,
sends them to the parameter server in a small `progress` request that the
server answers at once (its reply says whether the driver asked training to
stop). The check after each batch is one clock read, so reporting costs no
measurable training time.

`quiet_worker` keeps Python warnings and TensorFlow/absl log records of the
task off the executor's console: each distinct one is queued once and goes
to the driver with the next report, where it is shown to the user once.

Example:
>>> reporter = ProgressReporter(client, {"worker": 0, "launch": 0}, interval_s=0.5)
>>> with quiet_worker(reporter):
...     reporter.start_epoch(0, replica.batch_size)
...     replica.train_steps(0, 10, progress=reporter.batch)
"""

import contextlib
import logging
import re
import time
import warnings

from sparkeras.ps.progress_reports import warning_key

# Warning classes that speak to library developers, not to the user of a fit.
_DEVELOPER_WARNINGS = (
    DeprecationWarning,
    PendingDeprecationWarning,
    ImportWarning,
    ResourceWarning,
)
# Loggers whose records would otherwise reach the executor's stderr.
_QUIET_LOGGERS = ("tensorflow", "absl", "keras", "h5py", "jax")
_MAX_WARNINGS = 20
_MAX_MESSAGE_CHARS = 2000
# Messages about sparkeras' own doing that the user cannot act on: a round's
# last, shorter batch makes TensorFlow retrace its train step once.
_INTERNAL_NOISE = re.compile(r"triggered tf\.function retracing")


class ProgressReporter:
    """Counts a worker's progress in the epoch and reports it to the driver.

    Args:
        client: The task's `ParameterClient`.
        worker: dict with the task's `worker` id and `launch`.
        interval_s: Seconds between progress reports; None sends none (only
            queued warnings, with the epoch-end report).

    Attributes:
        stop: True once a reply said the driver wants training to stop.
    """

    def __init__(self, client, worker, interval_s):
        self._client = client
        self._worker = worker
        self._interval_s = interval_s
        self._next_report = time.monotonic() + (interval_s or 0.0)
        self._pending = []
        self._seen = set()
        self.stop = False
        self._epoch = None
        self._batch_size = 1
        self._started = time.monotonic()
        self._steps = 0
        self._samples = 0
        self._metric_samples = 0
        self._sums = {}

    # Counting ---------------------------------------------------------------

    def start_epoch(self, epoch, batch_size, steps_done=0, samples_done=0):
        """Starts counting `epoch`; a resumed launch passes what was done before it."""
        self._epoch = epoch
        self._batch_size = batch_size
        self._started = time.monotonic()
        self._steps, self._samples = steps_done, samples_done
        self._metric_samples, self._sums = 0, {}

    def round_done(self, samples, sums):
        """Adds a finished round (its samples and metric sums) to the epoch."""
        self._steps += -(-samples // self._batch_size)
        self._samples += samples
        self._metric_samples += samples
        for name, value in sums.items():
            self._sums[name] = self._sums.get(name, 0.0) + value

    def epoch_report(self):
        """The progress fields for the epoch-end request (with queued warnings)."""
        return {
            "steps": self._steps,
            "seconds": time.monotonic() - self._started,
            "warnings": self.take_warnings(),
        }

    def batch(self, batches, samples, logs):
        """Called after each batch of a round; returns True to end the round.

        Args:
            batches: Batches trained so far in this round.
            samples: Samples trained so far in this round.
            logs: The round's running metric means, or a function returning them
                (called only when a report is due).
        """
        if self._interval_s is None or time.monotonic() < self._next_report:
            return self.stop
        means = logs() if callable(logs) else logs
        sums = dict(self._sums)
        for name, value in (means or {}).items():
            sums[name] = sums.get(name, 0.0) + float(value) * samples
        self.send(
            steps=self._steps + batches,
            samples=self._samples + samples,
            metric_samples=self._metric_samples + samples,
            sums=sums,
        )
        return self.stop

    def send(self, **progress):
        """Sends one progress request now; notes the driver's stop request."""
        header = {**self._worker, "warnings": self.take_warnings()}
        if self._epoch is not None and progress:
            header.update(progress, epoch=self._epoch, seconds=time.monotonic() - self._started)
        reply, _ = self._client.call("progress", header, [])
        self.stop = self.stop or bool(reply.get("stop"))
        self._next_report = time.monotonic() + (self._interval_s or 0.0)

    # Warnings ---------------------------------------------------------------

    def add_warning(self, category, message):
        """Queues a warning for the driver, once per distinct (category, message)."""
        message = message[:_MAX_MESSAGE_CHARS]
        if _INTERNAL_NOISE.search(message):
            return
        key = warning_key(category, message)  # addresses and counts vary
        if key in self._seen or len(self._seen) >= _MAX_WARNINGS:
            return
        self._seen.add(key)
        self._pending.append({"category": category, "message": message})

    def take_warnings(self):
        """The queued warnings, emptying the queue."""
        pending, self._pending = self._pending, []
        return pending

    def flush(self):
        """Sends the queued warnings now, if any (at the end of a task)."""
        if self._pending:
            with contextlib.suppress(Exception):
                self.send()


class _Capture(logging.Handler):
    def __init__(self, reporter):
        super().__init__(logging.WARNING)
        self._reporter = reporter

    def emit(self, record):
        with contextlib.suppress(Exception):
            self._reporter.add_warning(f"{record.name} {record.levelname}", record.getMessage())


@contextlib.contextmanager
def quiet_worker(reporter):
    """Sends the task's warnings and library log records to `reporter`, not stderr.

    Python warnings (except those meant for library developers) and records
    of the TensorFlow, absl and Keras loggers at WARNING or above are queued
    on `reporter`; everything is put back as it was when the block ends.
    """

    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, _DEVELOPER_WARNINGS):
            reporter.add_warning(category.__name__, str(message))

    handler = _Capture(reporter)
    saved = []
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers[:] = [handler]
        logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = show
            yield reporter
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers[:] = handlers
            logger.propagate = propagate
        reporter.flush()
