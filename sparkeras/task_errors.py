"""Reads why a Spark training job failed, in words a user can act on.

Driver-side module. Spark reports a failed job as a Java exception whose
text holds, somewhere, the task's Python exception or the executor's loss;
py4j puts its own first line on top ("An error occurred while calling
o162.collectToPython"). These functions find the part that explains it.
"""

import re

# Exceptions a task raises the same way on every launch: relaunching cannot help.
DETERMINISTIC_ERRORS = frozenset(
    ["ValueError", "TypeError", "KeyError", "IndexError", "AttributeError", "NameError",
     "ImportError", "ModuleNotFoundError", "NotImplementedError", "ZeroDivisionError"]
)

_PYTHON_EXCEPTION = re.compile(r"^(?:[a-z_][\w]*\.)*([A-Z]\w*(?:Error|Exception)): (.*)$")
_EXECUTOR_LOST = re.compile(
    r"ExecutorLostFailure \(executor (\S+?) exited([^)]*)\)(?: Reason: (.*))?"
)
_LOST_TASK = re.compile(r"Lost task \S+ in stage \S+ \(TID \d+\) \(([^)]*?) executor (\S+?)\)")
_PY4J_PREFIX = "An error occurred while calling"


def worker_exception(error):
    """The last Python exception a task raised, from Spark's error text, or None.

    Example:
    >>> worker_exception(error)
    'ValueError: Input 0 of layer dense is incompatible ...'
    """
    causes = [
        match for line in str(error).splitlines()
        if not line.lstrip().startswith(("org.", "java.", "py4j", "scala.", "pyspark."))
        and (match := _PYTHON_EXCEPTION.match(line.strip()))
    ]
    return f"{causes[-1].group(1)}: {causes[-1].group(2)}" if causes else None


def describe_failure(error):
    """One line saying what made a training job fail.

    A lost executor is named (with Spark's reason and host), a crashed or
    killed Python worker is said so, a task's Python exception is quoted;
    otherwise the first line of Spark's error that is not py4j's.

    Example:
    >>> describe_failure(error)
    'executor 1 was lost (on 127.0.0.1; Command exited with code 137)'
    """
    text = str(error)
    lost = _EXECUTOR_LOST.search(text)
    if lost is not None:
        host = _LOST_TASK.search(text)
        details = [f"on {host.group(1)}"] if host and host.group(2) == lost.group(1) else []
        details += [part.strip() for part in (lost.group(3),) if part and part.strip()]
        suffix = f" ({'; '.join(details)})" if details else ""
        return f"executor {lost.group(1)} was lost{suffix}"
    if "Python worker exited unexpectedly" in text:
        return "a training task's Python worker exited unexpectedly (killed or crashed)"
    cause = worker_exception(error)
    if cause is not None:
        return cause
    lines = [line.strip(" :\t") for line in text.splitlines() if line.strip(" :\t")]
    useful = [line for line in lines if not line.startswith((_PY4J_PREFIX, "at "))]
    return (useful or lines or [type(error).__name__])[0][:300]


def deterministic_failure_message(cause):
    """The error for a task exception no relaunch can cure, with its fix, or None.

    Args:
        cause: `worker_exception(...)` of the failed job, or None.

    Example:
    >>> deterministic_failure_message("ModuleNotFoundError: No module named 'sparkeras'")
    "The executors' Python cannot import sparkeras ..."
    """
    if cause is None or cause.split(":")[0] not in DETERMINISTIC_ERRORS:
        return None
    missing = re.search(r"No module named '([\w.]+)'", cause)
    if missing is not None:
        module = missing.group(1).split(".")[0]
        return (
            f"The executors' Python cannot import {module} (a training task raised {cause}). "
            f"Install {module} in the Python the executors run (the same version as the "
            "driver's), point spark.pyspark.python at a Python that has it, or ship it with "
            "the job: --py-files for pure-Python packages, or spark.archives with a packed "
            "environment (docs/scaling.md, 'Python on the executors'). This is not retried."
        )
    return (
        f"A training task raised {cause}. This is not retried: the same input would fail "
        "again. Fix the cause (the model, its compile arguments or custom_objects) and fit "
        "again."
    )
