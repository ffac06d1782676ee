"""Checks of the options users pass to SparkModel, before any Spark job runs.

Driver-side module. Each check raises a `ValueError` or `TypeError` that says
what was wrong, the value received and what to do.
"""

import math
from dataclasses import dataclass

MODES = ("synchronous", "asynchronous", "hogwild")
FREQUENCIES = ("epoch", "batch")
DATA_MODES = ("auto", "memory", "stream")


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of a fit that most users leave alone.

    Attributes:
        seed: Base seed of the workers' per-epoch shuffling.
        server_host: Address the parameter server binds to and executors
            connect to. By default it binds to `spark.driver.bindAddress` if
            set, else `spark.driver.host`, and executors connect to
            `spark.driver.host`; never all interfaces unless you pass
            "0.0.0.0" (executors then still connect to `spark.driver.host`).
            On Spark Connect the server runs in the client process: by
            default it binds to, and advertises, the client's address on the
            route to the Connect server (docs/connect.md).
        server_advertised_host: Address executors connect to when they reach
            the server under another address than the one it binds to (NAT,
            a container's published port); None: as described above.
        server_port: Port, or an inclusive `(low, high)` range to try, for the
            parameter server (firewalled clusters); 0 picks a free port.
        tls: A `sparkeras.ps.TLSConfig` to encrypt parameter-server traffic.
        max_attempts: Launches of the training job before a fit gives up; a
            failed launch is relaunched and resumes from the server's state.
        staleness_damping: Asynchronous modes: divide a delta by its
            staleness + 1 (versions applied since the worker's pull), as DynSGD.
        max_staleness: Asynchronous modes: refuse deltas more than this many
            versions old (None: no bound).
        devices_per_task: Devices each replica spans. None (default): every
            GPU Spark gives the task (`spark.task.resource.gpu.amount`), or
            one CPU device without GPU resources. An int n on CPU-only tasks
            splits each task's CPU into n logical devices (TensorFlow logical
            CPUs, XLA host devices): the multi-device code path without GPUs.
            With several devices `batch_size` is the task's global batch,
            split evenly over them, so it must be a multiple of n.
        data: How a task holds its partition: "memory" reads it whole into
            numpy arrays; "stream" trains from its first shuffle buffer,
            spills the partition to a local Arrow file during the first
            epoch and reads it memory-mapped afterwards (memory about
            `shuffle_buffer` rows, not the partition); "auto" (default)
            keeps partitions of at most 128 MiB of Arrow data in memory and
            streams larger ones (docs/data-path.md).
        shuffle_buffer: Rows a streaming task shuffles together; each epoch
            also permutes the order of the spilled Arrow batches.
        start_timeout_s: Longest wait, once the first training task started,
            for all `num_workers` tasks to start: the tasks wait for one
            another, and a fit whose tasks cannot all run at once (slots
            taken by another job) stops with a clear error after it.

    Example:
    >>> SparkModel(model, config=TrainingConfig(server_port=(40000, 40100)))
    """

    seed: int = 0
    server_host: str = None
    server_advertised_host: str = None
    server_port: object = 0
    tls: object = None
    max_attempts: int = 3
    staleness_damping: bool = True
    max_staleness: int = None
    devices_per_task: int = None
    data: str = "auto"
    shuffle_buffer: int = 10_000
    start_timeout_s: float = 120.0

    def __post_init__(self):
        check_data_mode(self.data)
        check_positive_int("shuffle_buffer", self.shuffle_buffer)
        check_positive_number("start_timeout_s", self.start_timeout_s)


def check_data_mode(data):
    """Returns `data` if it is a known way to hold a task's partition."""
    if data not in DATA_MODES:
        raise ValueError(
            "Unknown data mode: TrainingConfig(data=...) takes "
            f"{', '.join(map(repr, DATA_MODES))} (\"auto\" streams partitions over 128 MiB). "
            f"Received: data={data!r}"
        )
    return data


def check_mode(mode):
    """Returns `mode` if it is a known training mode."""
    if mode not in MODES:
        raise ValueError(
            f"Unknown training mode. Use one of {', '.join(map(repr, MODES))}. "
            f"Received: mode={mode!r}"
        )
    return mode


def steps_per_round(frequency):
    """Maps `frequency` to steps between exchanges (None: once per epoch).

    Example:
    >>> steps_per_round("batch"), steps_per_round(10), steps_per_round("epoch")
    (1, 10, None)
    """
    if frequency == "epoch":
        return None
    if frequency == "batch":
        return 1
    if isinstance(frequency, int) and not isinstance(frequency, bool) and frequency > 0:
        return frequency
    raise ValueError(
        'frequency must be "epoch", "batch" or a positive int number of steps. '
        f"Received: frequency={frequency!r}"
    )


def check_positive_int(name, value):
    """Returns `value` if it is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}")
    return value


def check_positive_number(name, value):
    """Returns `value` if it is an int or float > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number. Received: {name}={value!r}")
    return value


def check_num_workers(num_workers, slots, task_cpus, counted=None):
    """Returns the number of training tasks, at most the cluster's task slots.

    A fit's training tasks must all run at once (they wait for one another),
    so it cannot use more workers than the cluster has slots. `counted` says
    what the slots were counted from (`sparkeras.slots.TaskSlots.counted`).
    """
    if num_workers is None:
        return slots
    check_positive_int("num_workers", num_workers)
    if num_workers > slots:
        counted = counted or f"executor cores / spark.task.cpus={task_cpus}"
        raise ValueError(
            f"num_workers={num_workers} is more than the {slots} task slots this Spark "
            f"session has ({counted}). Every worker "
            "must run at the same time: lower num_workers, or give the session more "
            "cores (e.g. master 'local[N]', spark.executor.instances, spark.executor.cores)."
            f" Received: num_workers={num_workers}"
        )
    return num_workers


def check_model(model, compiled=True):
    """Returns input/output shapes and input dtypes of a built model.

    Args:
        model: The `keras.Model` to check.
        compiled: Whether the model must be compiled (training, evaluation).
    """
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"SparkModel needs a keras.Model. Received: model={type(model).__name__}")
    if compiled and not getattr(model, "compiled", False):
        raise ValueError(
            "The model is not compiled. Call model.compile(optimizer=..., loss=..., "
            f"metrics=[...]) before SparkModel.fit or evaluate. Received: model={model.name!r}"
        )
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError) as error:
        raise ValueError(
            "The model has no defined inputs yet. Start it with keras.Input(shape=...) "
            f"so its shapes are known before training. Received: model={model.name!r}"
        ) from error
    return (
        [tuple(t.shape) for t in inputs],
        [tuple(t.shape) for t in outputs],
        [str(t.dtype) for t in inputs],
    )


def check_devices(conf, master, devices_per_task, batch_size=None):
    """Returns the devices per task, checked against the session's GPU settings.

    Args:
        conf: The session's `SparkConf` (anything with `.get(key, default)`).
        master: The session's master URL.
        devices_per_task: `TrainingConfig.devices_per_task`.
        batch_size: The fit's batch size, or None (inference rounds it).

    Example:
    >>> check_devices(spark.sparkContext.getConf(), "local[2]", None, 64)
    1
    """
    if devices_per_task is not None:
        check_positive_int("devices_per_task", devices_per_task)
    task_gpus = float(conf.get("spark.task.resource.gpu.amount", None) or 0)
    if task_gpus and str(master).startswith("local["):
        raise ValueError(
            "Spark's local mode does not schedule GPUs: its tasks would wait forever for "
            "spark.task.resource.gpu.amount. Use a cluster (or local-cluster[N,C,M]) with "
            "spark.executor.resource.gpu.amount, or drop the GPU settings. "
            f"Received: master={master!r}, spark.task.resource.gpu.amount={task_gpus:g}"
        )
    if task_gpus and devices_per_task not in (None, max(1, int(task_gpus))):
        raise ValueError(
            f"Each task gets {task_gpus:g} GPU(s) (spark.task.resource.gpu.amount), and its "
            "replica spans them all. Leave devices_per_task=None, or change the Spark "
            f"setting. Received: devices_per_task={devices_per_task}"
        )
    count = devices_per_task or max(1, int(task_gpus))
    if batch_size is not None and count > 1 and batch_size % count:
        raise ValueError(
            f"batch_size is the global batch of a task, split evenly over its {count} "
            f"devices: use a multiple of {count}. Received: batch_size={batch_size}"
        )
    executor_gpus = float(conf.get("spark.executor.resource.gpu.amount", None) or 0)
    reuse = str(conf.get("spark.python.worker.reuse", "true")).lower() == "true"
    if reuse and task_gpus and executor_gpus > math.ceil(task_gpus):
        raise ValueError(
            f"Executors have {executor_gpus:g} GPUs and tasks {task_gpus:g}, so a Python worker "
            "that Spark reuses could get other GPUs than those its backend started on. Set "
            "spark.python.worker.reuse=false (each task then forks a fresh worker). "
            "Received: spark.python.worker.reuse=true"
        )
    return count
