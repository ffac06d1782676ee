"""Spark's Python worker daemon, with Keras imported once before it forks.

Executor-side module. Set `spark.python.daemon.module=sparkeras.worker.daemon`
(the embedded session of `sparkeras.get_spark` does) and each executor pays
the Keras/backend import once, in its daemon, instead of once per Python
worker: workers fork with Keras already loaded. Importing is safe before a
fork; the backend's runtime (threads, devices) starts only in the worker.

Example:
    spark-submit --conf spark.python.daemon.module=sparkeras.worker.daemon job.py
"""

import logging

logger = logging.getLogger(__name__)


def preload_keras():
    """Imports Keras with the configured backend; never fails the daemon."""
    try:
        import keras  # noqa: F401  (the expensive import, paid once per executor)
    except Exception as error:  # a broken import must not take the daemon down
        logger.warning("sparkeras could not preload Keras in the Spark daemon: %s", error)


if __name__ == "__main__":
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    preload_keras()
    from pyspark.daemon import manager

    manager()
