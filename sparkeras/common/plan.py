"""The plain values a training or inference task needs, copied from the driver.

Neutral module: built on the driver, read on executors. It holds no Spark or
Keras objects, only values that pickle small (the model itself travels as a
Spark broadcast of `.keras` bytes, or on Spark Connect as a holder from
`sparkeras.worker.shipped`).
"""

from dataclasses import dataclass, field

SPLIT_COLUMN = "__sparkeras_is_validation"


@dataclass(frozen=True)
class ServerAddress:
    """Where a task finds the parameter server and how it proves who it is.

    The per-fit secret travels as a Spark broadcast, not inside the task's
    pickled function: PySpark hands that pickle to the JVM through py4j,
    whose DEBUG log would show it. On Spark Connect, where the pickle is part
    of the plan sent to the server, it travels as an artifact file
    (`sparkeras.worker.shipped.ArtifactBytes`) for the same reason.
    """

    host: str
    port: int
    secret_broadcast: object = field(repr=False)
    tls: object = None

    @property
    def secret(self):
        """The per-fit secret, bytes (read from its broadcast on the executor)."""
        return self.secret_broadcast.value


@dataclass(frozen=True)
class TrainPlan:
    """Everything one training task needs besides its partition.

    Attributes:
        mode: "synchronous", "asynchronous" or "hogwild".
        epochs: Total number of epochs of the fit.
        batch_size: Samples per training step on each worker.
        data: The `DataSpec` that turns Arrow batches into model arrays.
        backend: Keras backend the driver uses.
        server: Parameter server address and per-fit secret; None until the
            driver's server listens (`sparkeras.training` then adds it with
            `dataclasses.replace`).
        seed: Base seed for each worker's per-epoch shuffling.
        custom_objects: Passed to `keras.saving.load_model`.
        devices_per_task: Devices per replica on a CPU task (None: one per
            GPU of the task, or one CPU device); see `TrainingConfig`.
        progress_interval_s: Seconds between the workers' progress reports
            to the driver; None sends none.
        pruning: Dynamic Network Surgery's state for the workers, plain
            values (`DriverPruning.plan`), or None.
        data_mode: "auto", "memory" or "stream" (`TrainingConfig.data`).
        shuffle_buffer: Rows of a streaming task's shuffle buffer.
        steps_per_round: Steps between exchanges, None for once per epoch
            (a streaming task then needs no count before its first step).
    """

    mode: str
    epochs: int
    batch_size: int
    data: object
    backend: str
    server: ServerAddress = None
    seed: int = 0
    custom_objects: dict = None
    devices_per_task: int = None
    progress_interval_s: float = None
    pruning: dict = None
    data_mode: str = "auto"
    shuffle_buffer: int = 10_000
    steps_per_round: int = None


@dataclass(frozen=True)
class InferencePlan:
    """Everything one predict or evaluate task needs besides its partition."""

    model_key: str
    data: object
    backend: str
    batch_size: int
    custom_objects: dict = None
    devices_per_task: int = None
