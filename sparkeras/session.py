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


def get_spark(master="local[*]", app_name="sparkeras", conf=None, *, remote=None):
    """Returns the active SparkSession, or builds an embedded local one.

    An existing session is returned as it is: its master and settings are
    never replaced. Only when no session is active does this build one, on
    `master`, with Arrow enabled and the Python workers set to run the
    interpreter that runs the driver (`PYSPARK_PYTHON`). Its Python workers
    then start in the background, with Keras imported once per executor
    (`wait_for_python_workers` waits for them).

    With `remote` (or the standard `SPARK_REMOTE` variable) the session is a
    Spark Connect client: `"sc://host:15002"` connects to a running Connect
    server (`conf` then holds runtime settings only), and `"local[N]"` starts
    one in this process, set up as the embedded session above.

    Args:
        master: Spark master URL for a new session, e.g. `"local[2]"`.
        app_name: Application name shown in the Spark UI.
        conf: Optional dict of extra Spark settings for a new session.
        remote: A Spark Connect URL, e.g. `"sc://host:15002"` or `"local[2]"`.

    Returns:
        A `pyspark.sql.SparkSession` (a Spark Connect one with `remote`).

    Example:
    >>> import sparkeras
    >>> spark = sparkeras.get_spark("local[2]")
    >>> spark.range(3).count()
    3
    >>> connect = sparkeras.get_spark(remote="sc://spark-host:15002")
    """
    from pyspark.sql import SparkSession

    from sparkeras import quiet

    remote = remote or os.environ.get("SPARK_REMOTE")
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    quiet.quiet_tensorflow()  # the driver's, and the Python workers' (they inherit it)
    if remote:
        return _connect_session(remote, app_name, conf)
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in _embedded_settings(master, conf).items():
        builder = builder.config(key, value)
    return _warm_up(builder.getOrCreate())


def _embedded_settings(master, conf):
    """The settings of a session on `master` that runs in this process, `conf` last."""
    from sparkeras import quiet

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
    return settings


def _connect_session(remote, app_name, conf):
    """A Spark Connect session on `remote`; a local one starts its server here."""
    import warnings

    from pyspark.sql import SparkSession

    settings = dict(conf or {})
    if not remote.startswith("sc://"):
        # A Connect server in this process: set it up as an embedded session, and let
        # saves (KerasEstimator.write) copy the .keras file to its local file system.
        settings = {**_embedded_settings(remote, conf), **_LOCAL_CONNECT_CONF, **settings}
    builder = SparkSession.builder.remote(remote).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    with warnings.catch_warnings():
        # The local server already took the static settings at its start; setting
        # them again as runtime settings only warns.
        warnings.filterwarnings("ignore", message="Failed to set", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*NOT supported in Spark Connect",
                                category=UserWarning)
        session = builder.getOrCreate()
    return _warm_up(session) if not remote.startswith("sc://") else session


_LOCAL_CONNECT_CONF = {"spark.sql.artifact.copyFromLocalToFs.allowDestLocal": "true"}


def _warm_up(session):
    """Starts the session's Python workers in the background; returns the session."""
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
    from sparkeras.session_access import default_parallelism, job_description

    try:
        slots = default_parallelism(session)
        with job_description(session, "sparkeras: start Python workers"):
            session.range(slots, numPartitions=slots).mapInArrow(_nothing, "id long").collect()
    except Exception:  # the session was stopped meanwhile: nothing to warm
        pass


def _nothing(batches):
    # Returns what it got: a task that ends its output normally leaves its
    # worker in the pool for the next job (an empty one, here, did not).
    yield from batches
