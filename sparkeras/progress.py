"""Live, global progress of a fit on the driver, and the workers' warnings.

Driver-side module, in three parts:

- `ProgressTracker` lives in the parameter server's coordinator. Workers send
  small `progress` reports (steps, samples, metric sums so far in the epoch)
  at most every `REPORT_INTERVAL_S` seconds; the tracker sums them over the
  workers and queues a ("progress", epoch, info, None) event for the
  driver's main thread. It also queues each distinct worker warning once.
- `FitProgress` shows those events as Keras users expect from `verbose`:
  1, one bar per epoch (a tqdm bar in a terminal, a widget in Jupyter),
  2, one line per epoch, 0, nothing. While its bar is live it pauses Spark's
  own console progress bar, which would write over it.
- `handle_event` runs on the driver's main thread for those events: it
  updates the display, calls the batch-level hooks of the Keras callbacks
  with the global running logs, and passes a stop they ask for to the workers.

Example:
>>> with FitProgress(verbose=1, epochs=5, spark_context=spark.sparkContext) as display:
...     display.update(0, {"steps": 10, "total_steps": 40, "samples": 640,
...                        "samples_per_s": 3200.0, "logs": {"loss": 0.7}})
"""

import contextlib
import logging
import math
import re
import sys
import threading
import warnings

__all__ = [
    "REPORT_INTERVAL_S",
    "FitProgress",
    "ProgressTracker",
    "WorkerWarning",
    "check_metric_sums",
    "check_verbose",
]

logger = logging.getLogger("sparkeras")

# Seconds between two progress reports of a worker (when someone shows them).
REPORT_INTERVAL_S = 0.5
_MAX_WARNINGS = 100
_BAR_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
)


class WorkerWarning(UserWarning):
    """A warning raised in a training task on a Spark executor, shown once on the driver.

    Example:
    >>> import warnings
    >>> warnings.filterwarnings("ignore", category=sparkeras.callbacks.WorkerWarning)
    """


def check_verbose(verbose):
    """Returns `verbose` as 0, 1 or 2 ("auto" is 1, as in Keras)."""
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(
            "verbose must be 0 (silent), 1 (a progress bar per epoch), 2 (a line per epoch) "
            f'or "auto". Received: verbose={verbose!r}'
        )
    return int(verbose)


# Coordinator side (server threads) ------------------------------------------


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
        _check_progress(header)
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
        self._events.put(("progress", header["epoch"], info, None))

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
        self._events.put(("progress", epoch, info, None))

    def take_warnings(self, header):
        """Queues each warning of a request not seen before in this fit."""
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
            key = (item["category"], re.sub(r"0x[0-9a-fA-F]+|\d+", "#", item["message"]))
            with self._lock:
                if key in self._warned or len(self._warned) >= _MAX_WARNINGS:
                    continue
                self._warned.add(key)
            self._events.put(("warning", None, dict(item, worker=header.get("worker")), None))

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


def _check_progress(header):
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


# Driver's main thread ---------------------------------------------------------


def handle_event(kind, epoch, info, model, callbacks, coordinator, run):
    """Handles a "progress" or "warning" event of the coordinator on the main thread.

    Progress goes to the display (`run.progress`) and, if `run.batch_hooks`,
    to the callbacks' `on_train_batch_end(step, global running logs)`; when a
    callback then sets `model.stop_training`, the workers are told to stop.
    """
    if kind == "warning":
        _warn(info)
        return
    if run.progress is not None:
        run.progress.update(epoch, info)
    key = (epoch, info["steps"])
    if run.batch_hooks and info["steps"] > 0 and key != getattr(run, "_last_batch_hook", None):
        run._last_batch_hook = key
        callbacks.on_train_batch_end(info["steps"] - 1, dict(info["logs"]))
        if model.stop_training:
            coordinator.request_stop()


def _warn(item):
    text = f"{item['category']} on a Spark worker: {item['message']}"
    warnings.warn(text, WorkerWarning, stacklevel=2)


class FitProgress:
    """Shows a fit's global progress as Keras' `verbose` asks.

    Args:
        verbose: 1 for a live bar per epoch, 2 for a line per epoch (0 needs
            no display).
        epochs: Epochs of the fit.
        spark_context: The session's SparkContext, whose console progress
            bar is paused while a live bar shows; None leaves it alone.
        file: Where to write; defaults to `sys.stdout`.
        dynamic: Force a live bar (True) or lines (False); None decides:
            live in Jupyter and on a terminal, lines otherwise (a log file).

    Example:
    >>> with FitProgress(1, epochs=3, spark_context=sc) as display:
    ...     display.update(0, info)          # from each progress event
    ...     display.epoch_end(0, logs)       # from each epoch end
    """

    def __init__(self, verbose, epochs, spark_context=None, file=None, dynamic=None):
        self.verbose = check_verbose(verbose)
        self.epochs = epochs
        self._context = spark_context
        self._file = file
        self._notebook = _in_notebook() if file is None else False
        if dynamic is None:
            stream = file or sys.stdout
            dynamic = self._notebook or bool(getattr(stream, "isatty", lambda: False)())
        self.dynamic = self.verbose == 1 and dynamic
        self._bar = None
        self._bar_epoch = None
        self._info = {}
        self._paused = None

    def __enter__(self):
        if self.verbose and self._context is not None:
            # Spark's bar, on the same console, would write over our bar and lines.
            self._paused = _pause_spark_console_bar(self._context)
        return self

    def __exit__(self, *exc_info):
        self.close()

    def update(self, epoch, info):
        """Shows the progress `info` of `epoch` (a progress event's payload)."""
        self._info[epoch] = info
        if not self.dynamic:
            return
        bar = self._bar_for(epoch, info["total_steps"])
        if info["total_steps"] != bar.total:
            bar.total = info["total_steps"]
        if info["steps"] >= bar.n:
            bar.update(info["steps"] - bar.n)
        else:
            bar.n = info["steps"]
        bar.set_postfix_str(_postfix(info), refresh=False)
        bar.refresh()

    def epoch_end(self, epoch, logs):
        """Replaces the epoch's bar by its summary line with the global epoch logs.

        The line reads like Keras': `Epoch 3/5 - 42/42 steps - 1.2s - 9,512
        samples/s - loss: 0.4213 - accuracy: 0.9012 - val_loss: ...`: steps of
        all workers, the slowest worker's training time (validation aside),
        samples trained per second by all workers together, global logs.
        """
        info = self._info.pop(epoch, {})
        self._close_bar()
        parts = [f"Epoch {epoch + 1}/{self.epochs}"]
        if info:
            # The slowest worker's training time (validation aside) and the total throughput.
            parts += [
                f"{info['steps']}/{info['total_steps']} steps",
                f"{info['seconds']:.1f}s",
                f"{_rate(info)} samples/s",
            ]
        parts += [f"{name}: {_number(value)}" for name, value in logs.items()]
        print(" - ".join(parts), file=self._file or sys.stdout, flush=True)

    def close(self):
        """Closes any open bar and gives Spark its console progress bar back."""
        self._close_bar()
        if self._paused:
            _resume_spark_console_bar(self._context)
            self._paused = None

    def _bar_for(self, epoch, total):
        if self._bar is not None and self._bar_epoch != epoch:
            self._close_bar()
        if self._bar is None:
            bar_class = _tqdm_class(self._notebook)
            self._bar = bar_class(
                total=total,
                desc=f"Epoch {epoch + 1}/{self.epochs}",
                unit="step",
                file=self._file or sys.stdout,
                leave=False,
                dynamic_ncols=True,
                bar_format=_BAR_FORMAT,
                mininterval=0.2,
            )
            self._bar_epoch = epoch
        return self._bar

    def _close_bar(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._bar_epoch = None


def _postfix(info):
    parts = [f"{_rate(info)} samples/s"]
    parts += [f"{name}={_number(value)}" for name, value in info["logs"].items()]
    return ", ".join(parts)


def _rate(info):
    return f"{info.get('samples_per_s', 0.0):,.0f}"


def _number(value):
    return f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else str(value)


def _in_notebook():
    """True inside a Jupyter kernel (IPython with an IPKernelApp)."""
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and "IPKernelApp" in shell.get_ipython().config
    except Exception:  # no running IPython
        return False


def _tqdm_class(notebook):
    """tqdm's notebook widget in Jupyter (when ipywidgets is there), else the terminal bar."""
    if notebook:
        with contextlib.suppress(ImportError):
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm

            return tqdm
    from tqdm import tqdm

    return tqdm


def _pause_spark_console_bar(context):
    """Stops Spark's console progress bar, if it is on; returns whether it was paused.

    Spark draws its bar (`spark.ui.showConsoleProgress`) from a JVM timer on
    the same console. It has no switch at run time, so the bar is stopped
    here and a new one is put in its place by `_resume_spark_console_bar`.
    Returns None when it is off, False when it is on and cannot be paused.
    """
    try:
        option = context._jsc.sc().progressBar()
        if not option.isDefined():
            return None
        bar = option.get()
        bar.stop()
        bar.finishAll()
        return True
    except Exception as error:  # an unexpected Spark version: leave it be
        logger.info("Could not pause Spark's console progress bar: %s", error)
        return False


def _resume_spark_console_bar(context):
    """Gives the SparkContext a new console progress bar (the old one is stopped)."""
    try:
        spark_context = context._jsc.sc()
        field = spark_context.getClass().getDeclaredField("_progressBar")
        field.setAccessible(True)
        bar = context._jvm.org.apache.spark.ui.ConsoleProgressBar(spark_context)
        field.set(spark_context, context._jvm.scala.Some(bar))
    except Exception as error:
        logger.warning(
            "Spark's console progress bar stays off after this fit (%s); a new SparkSession "
            "brings it back.",
            error,
        )
