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
    elif backend == "jax":
        _limit_jax_threads(threads)


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


def _limit_jax_threads(threads):
    """Sets XLA's CPU threading flag; it applies when JAX starts its backend.

    Importing JAX (the preloading daemon does) does not start the backend,
    so the flag set here still applies in a forked worker. One thread per
    task turns Eigen's multithreading off. XLA's own CPU runtime sizes its
    thread pool from the process' CPU affinity, which only the cluster
    manager sets (cgroups cpusets, `taskset`); XLA has no flag for it (an
    `intra_op_parallelism_threads=N` token is not an XLA flag: XLA ignores it
    and every flag after it).
    """
    merge_xla_flags({"--xla_cpu_multi_thread_eigen": "false" if threads == 1 else "true"})


def merge_xla_flags(flags):
    """Adds `flags` to the XLA_FLAGS variable, replacing those of the same name.

    Args:
        flags: dict from flag name (as written, e.g. `"--xla_cpu_multi_thread_eigen"`)
            to its value.

    Example:
    >>> merge_xla_flags({"--xla_force_host_platform_device_count": "2"})
    """
    kept = [
        item
        for item in os.environ.get("XLA_FLAGS", "").split()
        if item.split("=", 1)[0] not in flags
    ]
    added = [f"{name}={value}" for name, value in flags.items()]
    # Ours first: XLA stops reading at a token that is not a flag.
    os.environ["XLA_FLAGS"] = " ".join([*added, *kept])
