"""Finds the user's SparkSession or builds an embedded local one."""

import os
import sys
import threading

_EMBEDDED_CONF = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.python.worker.reuse": "true",
    "spark.python.daemon.module": "sparkeras.worker.daemon",
}


def get_spark(master="local[*]", app_name="sparkeras", conf=None):
    """Returns the active SparkSession, or builds an embedded local one.

    An existing session is returned as it is: its master and settings are
    never replaced. Only when no session is active does this build one, on
    `master`, with Arrow enabled and the Python workers set to run the
    interpreter that runs the driver (`PYSPARK_PYTHON`). Its Python workers
    then start in the background, with Keras imported once per executor
    (`wait_for_python_workers` waits for them).

    Args:
        master: Spark master URL for a new session, e.g. `"local[2]"`.
        app_name: Application name shown in the Spark UI.
        conf: Optional dict of extra Spark settings for a new session.

    Returns:
        A `pyspark.sql.SparkSession`.

    Example:
    >>> import sparkeras
    >>> spark = sparkeras.get_spark("local[2]")
    >>> spark.range(3).count()
    3
    """
    from pyspark.sql import SparkSession

    from sparkeras import quiet

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    quiet.quiet_tensorflow()  # the driver's, and the Python workers' (they inherit it)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    settings = dict(_EMBEDDED_CONF)
    backend = _keras_backend()
    if backend:  # executors (and their preloading daemon) use the driver's backend
        settings["spark.executorEnv.KERAS_BACKEND"] = backend
    if any(".resource.gpu." in key for key in conf or {}):
        # A backend keeps the GPUs it started on: one fresh Python worker per task.
        settings["spark.python.worker.reuse"] = "false"
    if master.startswith("local"):
        # An embedded session talks to itself only: keep it on loopback.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        settings["spark.driver.host"] = "127.0.0.1"
    settings.update(conf or {})
    settings.update(quiet.quiet_session_conf(settings))
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    warm_up = threading.Thread(target=_start_python_workers, args=(session,), daemon=True)
    warm_up.start()
    _WARM_UPS[id(session)] = warm_up
    return session


def wait_for_python_workers(session, timeout_s=180.0):
    """Waits until an embedded session's Python workers are up (Keras imported).

    `get_spark` starts them in the background when it builds a session, so
    that the first fit does not pay for them; wait for them when you time
    things, or count Spark jobs. A session `get_spark` did not build has no
    warm-up and returns at once.

    Returns:
        True once the workers are up (or there is nothing to wait for),
        False if `timeout_s` passed first.

    Example:
    >>> spark = sparkeras.get_spark("local[2]")
    >>> sparkeras.session.wait_for_python_workers(spark)
    True
    """
    warm_up = _WARM_UPS.get(id(session))
    if warm_up is not None:
        warm_up.join(timeout_s)
        return not warm_up.is_alive()
    return True


_WARM_UPS = {}  # id(session) -> the thread of its background warm-up job


def _keras_backend():
    """The driver's Keras backend, if Keras is imported or KERAS_BACKEND is set."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend()
    return os.environ.get("KERAS_BACKEND")


def _start_python_workers(session):
    """Runs one tiny Arrow task per slot so the daemon and workers are up.

    An Arrow task, like the training, evaluation and prediction tasks: Spark
    gave those a daemon and workers of their own after a warm-up with an RDD
    task (measured: the first fit then waited about 5 s more).
    """
    context = session.sparkContext
    context.setJobDescription("sparkeras: start Python workers")
    slots = context.defaultParallelism
    try:
        session.range(slots, numPartitions=slots).mapInArrow(_nothing, "id long").collect()
    except Exception:  # the session was stopped meanwhile: nothing to warm
        pass
    finally:
        context.setJobDescription(None)


def _nothing(batches):
    # Returns what it got: a task that ends its output normally leaves its
    # worker in the pool for the next job (an empty one, here, did not).
    yield from batches
