"""Keeps Spark's and TensorFlow's start-up notices off the user's console.

Neutral module (the driver applies it; executors inherit the environment).
An embedded session gets a log4j2 configuration with warnings and errors
only, and TensorFlow's C++ logging is set to warnings before it is imported,
in the driver and in the Spark workers. Set `SPARKERAS_VERBOSE=1` (the
`sparkeras` command's `--verbose`) to get every notice back.

Example:
>>> import os; os.environ["SPARKERAS_VERBOSE"] = "1"   # before get_spark()
"""

import os
import sys

VERBOSE_VARIABLE = "SPARKERAS_VERBOSE"
_LOG4J_FILE = os.path.join(os.path.dirname(__file__), "resources", "log4j2-quiet.properties")
_JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def is_verbose():
    """Whether the user asked for Spark's and TensorFlow's own start-up logging."""
    return os.environ.get(VERBOSE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def quiet_tensorflow():
    """Sets TensorFlow's C++ log level to warnings, unless verbose or already set.

    Only effective before TensorFlow is imported in this process; Spark's
    Python workers started afterwards inherit it.
    """
    if not is_verbose() and "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def quiet_session_conf(conf):
    """Spark settings that make a new embedded session start quietly.

    Args:
        conf: The settings the session will be built with (never changed).

    Returns:
        A dict to merge into the session's settings: the quiet log4j2
        configuration added to the driver's Java options (after the user's
        own options, which are kept), or nothing when verbose or when the
        user names a log4j2 configuration of their own.

    Example:
    >>> quiet_session_conf({})["spark.driver.extraJavaOptions"]
    '-Dlog4j2.configurationFile=file:.../log4j2-quiet.properties'
    """
    options = conf.get(_JAVA_OPTIONS, "")
    if is_verbose() or "log4j2.configurationFile" in options:
        return {}
    quiet = f"-Dlog4j2.configurationFile=file:{_LOG4J_FILE}"
    return {_JAVA_OPTIONS: f"{options} {quiet}".strip()}
