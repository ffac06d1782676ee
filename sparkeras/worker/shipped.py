"""Bytes a task needs from the driver, shipped without a Spark broadcast.

Executor-side module (the driver builds these holders; tasks read them). On a
Spark Connect session there is no `SparkContext.broadcast`: small values
travel inside the task's closure (`InlineBytes`), large ones as a session
artifact file that Spark copies to every node (`ArtifactBytes`). Both read
like a broadcast, through `.value`, so the task functions take either.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class InlineBytes:
    """Bytes pickled into the task's closure.

    Example:
    >>> InlineBytes(b"abc").value
    b'abc'
    """

    data: bytes = field(repr=False)

    @property
    def value(self):
        """The bytes."""
        return self.data

    def destroy(self):
        """Nothing to free: the bytes go away with the task (as `Broadcast.destroy`)."""


@dataclass(frozen=True)
class ArtifactBytes:
    """Bytes in a file added to the session with `spark.addArtifacts(path, file=True)`.

    Attributes:
        name: The artifact's file name, found on executors with `SparkFiles.get`.

    Example:
    >>> ArtifactBytes("sparkeras-model-1f2e.keras").value[:2]
    b'PK'
    """

    name: str

    @property
    def value(self):
        """The file's bytes, read on the executor."""
        from pyspark import SparkFiles

        with open(SparkFiles.get(self.name), "rb") as handle:
            return handle.read()

    def destroy(self):
        """Nothing to free: a Connect session keeps its artifacts until it stops."""
