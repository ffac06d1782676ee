"""Saving and loading of the Keras stages with Spark's own ML writer and reader.

Driver-side module. A stage saved at `path` is Spark's `path/metadata` (JSON:
class, uid, params; `DefaultParamsWriter`) plus the Keras model beside it in
`path/model.keras`, and the `decode` param, a function, pickled by value
(cloudpickle) in `path/decode.pkl`: loading it runs that pickle, so load
stages only from paths you trust, as with any pickle. All go through Spark's
Hadoop file system layer, so any path Spark itself can save to works (local,
`file:`, `hdfs:`, `s3a:`, ...), and a `Pipeline` or `PipelineModel` holding
the stages saves and loads with `write().save(path)` and `load(path)`.

On a Spark Connect session there is no Hadoop layer in the client: the
`.keras` file is copied to the server's file system with
`spark.copyFromLocalToFs` and read back with the `binaryFile` data source, so
`path` is a path the Connect server resolves (see docs/connect.md).
"""

import os
import pickle

from pyspark.ml.util import (
    DefaultParamsReader,
    DefaultParamsWriter,
    MLReadable,
    MLReader,
    MLWritable,
    MLWriter,
)

__all__ = ["KerasReadWrite"]

from sparkeras.session_access import is_connect

_MODEL_FILE = "model.keras"
_DECODE_FILE = "decode.pkl"
_FUNCTION_PARAMS = ("model", "decode")
_CHUNK_BYTES = 8 << 20


class _KerasStageWriter(MLWriter):
    """Writes a stage's params as Spark ML metadata and its model as a `.keras` file."""

    def __init__(self, instance):
        super().__init__()
        self._instance = instance

    def save(self, path):
        """Saves the stage at `path` (replacing it after `overwrite()`)."""
        if self.shouldOverwrite and is_connect(self.sparkSession):
            from pyspark.ml.connect.readwrite import RemoteMLWriter

            RemoteMLWriter.handleOverwrite(path, True)  # the JVM call of MLWriter.save
            self.saveImpl(path)
            return
        super().save(path)

    def saveImpl(self, path):
        instance = self._instance
        from sparkeras.data.decode import dumps_by_value

        params = {
            p.name: v for p, v in instance._paramMap.items() if p.name not in _FUNCTION_PARAMS
        }
        value = instance.getOrDefault("model") if instance.isDefined("model") else None
        decode = instance.getDecode()
        DefaultParamsWriter.saveMetadata(
            instance,
            path,
            self.sparkSession,
            extraMetadata={
                "modelFile": None if value is None else _MODEL_FILE,
                "decodeFile": None if decode is None else _DECODE_FILE,
            },
            paramMap=params,
        )
        if value is not None:
            _write_bytes(self.sparkSession, os.path.join(path, _MODEL_FILE), value.data)
        if decode is not None:
            _write_bytes(self.sparkSession, os.path.join(path, _DECODE_FILE),
                         dumps_by_value(decode))


class _KerasStageReader(MLReader):
    """Reads back what `_KerasStageWriter` wrote, into a new instance of `cls`."""

    def __init__(self, cls):
        super().__init__()
        self._cls = cls

    def load(self, path):
        from sparkeras.ml.params import KerasModelBytes

        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession)
        expected = f"{self._cls.__module__}.{self._cls.__name__}"
        if metadata["class"] != expected:
            raise ValueError(
                f"{path!r} holds a saved {metadata['class']}, not a {expected}: load it with "
                f"that class, or pyspark.ml.Pipeline(Model).load for a whole pipeline. "
                f"Received: path={path!r}"
            )
        instance = self._cls()
        instance._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(instance, metadata)
        if metadata.get("modelFile"):
            data = _read_bytes(self.sparkSession, os.path.join(path, metadata["modelFile"]))
            instance._set(model=KerasModelBytes(data))
        if metadata.get("decodeFile"):
            data = _read_bytes(self.sparkSession, os.path.join(path, metadata["decodeFile"]))
            instance._set(decode=pickle.loads(data))
        return instance


class KerasReadWrite(MLWritable, MLReadable):
    """Mixin giving a Keras stage Spark ML's `write()`/`save()` and `read()`/`load()`.

    Example:
    >>> estimator.write().overwrite().save("/tmp/estimator")
    >>> KerasEstimator.load("/tmp/estimator").getEpochs()
    """

    def write(self):
        """Returns an `MLWriter` that saves this stage and its Keras model."""
        return _KerasStageWriter(self)

    @classmethod
    def read(cls):
        """Returns an `MLReader` that loads a stage saved by `write()`."""
        return _KerasStageReader(cls)


def _hadoop_file(spark, path):
    """The Hadoop `FileSystem` and `Path` Spark resolves `path` to."""
    context = spark.sparkContext
    hadoop_path = context._jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(context._jsc.hadoopConfiguration()), hadoop_path


def _write_bytes(spark, path, data):
    if is_connect(spark):
        _copy_to_server(spark, path, data)
        return
    file_system, hadoop_path = _hadoop_file(spark, path)
    stream = file_system.create(hadoop_path, True)
    try:
        for start in range(0, len(data), _CHUNK_BYTES):
            stream.write(data[start : start + _CHUNK_BYTES])
    finally:
        stream.close()


def _read_bytes(spark, path):
    if is_connect(spark):
        rows = spark.read.format("binaryFile").load(path).select("content").collect()
        return bytes(rows[0].content)
    file_system, hadoop_path = _hadoop_file(spark, path)
    stream = file_system.open(hadoop_path)
    try:
        return bytes(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()


def _copy_to_server(spark, path, data):
    """Writes `data` at `path` of a Connect server's file system (a path without scheme)."""
    import tempfile
    from urllib.parse import urlparse

    from pyspark.errors import PySparkException

    server_path = urlparse(path).path if path.startswith("file:") else path
    with tempfile.TemporaryDirectory(prefix="sparkeras-") as folder:
        local = os.path.join(folder, _MODEL_FILE)
        with open(local, "wb") as handle:
            handle.write(data)
        try:
            spark.copyFromLocalToFs(local, server_path)
        except PySparkException as error:
            raise ValueError(
                "Cannot copy the .keras file to the Spark Connect server's file system: "
                f"{str(error).splitlines()[0]}. Save to a path of the server's default file "
                "system without a scheme (hdfs:/s3a: come from its fs.defaultFS); a local "
                "path needs the server started with "
                "spark.sql.artifact.copyFromLocalToFs.allowDestLocal=true. "
                f"Received: path={path!r}"
            ) from error
