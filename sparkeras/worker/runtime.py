"""Prepares an executor's Python worker before Keras is imported there.

Executor-side module: it must not import driver code. The thread settings
only take effect if they are applied before the backend initialises, so
every task calls `prepare_process` before its first `import keras`.
"""

import os
import sys

_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)


def prepare_process(backend, threads):
    """Selects the Keras backend and the thread count of this worker process.

    Args:
        backend: Keras backend name the driver uses, e.g. `"tensorflow"`.
        threads: CPU threads this task may use (Spark's `spark.task.cpus`).

    Raises:
        RuntimeError: Keras was already imported in this process with another
            backend, which cannot be changed any more.

    Example:
    >>> prepare_process("tensorflow", 1)
    """
    threads = max(1, int(threads))
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise RuntimeError(
                "This Spark Python worker already runs Keras with another backend. "
                "Set KERAS_BACKEND the same for the driver and the executors "
                "(spark.executorEnv.KERAS_BACKEND). "
                f"Received: driver backend={backend!r}, worker backend={current!r}"
            )
    else:
        os.environ["KERAS_BACKEND"] = backend
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(threads)
    if backend == "tensorflow":
        _limit_tensorflow_threads(threads)


def _limit_tensorflow_threads(threads):
    """Sets TensorFlow's thread pools unless its runtime already started.

    A reused Python worker keeps the runtime (and pools) of its first task;
    a worker forked from the preloading daemon has TensorFlow imported but
    not started, so the limits still apply there.
    """
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # runtime already initialised by an earlier task of this worker
