"""Shows a fit's live, global progress on the driver, and the workers' warnings.

Driver-side module, display only. Workers report their progress at most every
`REPORT_INTERVAL_S` seconds; the parameter server sums the reports
(`sparkeras.ps.progress_reports`) and the training loop
(`sparkeras.training`) passes each global progress event to `FitProgress`,
which shows it as Keras users expect from `verbose`: 1, one bar per epoch (a
tqdm bar in a terminal, a widget in Jupyter), 2, one line per epoch, 0,
nothing. While its bar is live it pauses Spark's own console progress bar,
which would write over it. `show_worker_warning` shows each distinct worker
warning once, as a `WorkerWarning`.

Example:
>>> with FitProgress(verbose=1, epochs=5, spark_context=spark.sparkContext) as display:
...     display.update(0, {"steps": 10, "total_steps": 40, "samples": 640,
...                        "samples_per_s": 3200.0, "logs": {"loss": 0.7}})
"""

import contextlib
import logging
import math
import sys
import warnings

__all__ = [
    "REPORT_INTERVAL_S",
    "FitProgress",
    "WorkerWarning",
    "check_verbose",
    "show_worker_warning",
]

logger = logging.getLogger("sparkeras")

# Seconds between two progress reports of a worker (when someone shows them).
REPORT_INTERVAL_S = 0.5
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


def show_worker_warning(item):
    """Shows a worker's warning (a `WarningReport` event's item) as a `WorkerWarning`.

    The parameter server passes on each distinct warning once per fit.

    Example:
    >>> show_worker_warning({"category": "UserWarning", "message": "slow input", "worker": 1})
    """
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
