"""elephas' public API on top of sparkeras: switch by changing imports.

Driver-side module, a thin layer: every fit, prediction and evaluation runs
through `sparkeras.SparkModel` (RDDs of `(x, y)` numpy pairs become
DataFrames of array columns first). Options elephas has and sparkeras maps
are honoured; options sparkeras has no use for are accepted with a one-time
`ElephasCompatWarning` that says what happens instead, never silently.

    from elephas.spark_model import SparkModel, load_spark_model
    from elephas.utils.rdd_utils import to_simple_rdd
    from elephas.ml_model import ElephasEstimator, ElephasTransformer
    from elephas.ml.adapter import to_data_frame

becomes

    from sparkeras.compat.elephas import (SparkModel, load_spark_model, to_simple_rdd,
                                          ElephasEstimator, ElephasTransformer, to_data_frame)

Example:
>>> rdd = to_simple_rdd(spark.sparkContext, x_train, y_train)
>>> spark_model = SparkModel(model, frequency="epoch", mode="synchronous", num_workers=2)
>>> spark_model.fit(rdd, epochs=5, batch_size=32, verbose=0, validation_split=0.1)
>>> spark_model.evaluate(x_test, y_test)          # [loss, accuracy]
>>> spark_model.predict(x_test)[0]                # the first row's class probabilities
"""

import json
import os
import tempfile
import warnings
import zipfile

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params
from pyspark.ml.param.shared import HasFeaturesCol, HasLabelCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

import sparkeras
from sparkeras import options

__all__ = [
    "ElephasCompatWarning",
    "ElephasEstimator",
    "ElephasTransformer",
    "SparkModel",
    "load_ml_estimator",
    "load_ml_transformer",
    "load_spark_model",
    "to_data_frame",
    "to_simple_rdd",
]

_CONFIG_ENTRY = "sparkeras_elephas.json"
_ROW = "__elephas_row"
_VALIDATION = "__elephas_validation"
_LABEL = "__elephas_label"
_warned = set()

# elephas' split of losses into regression (a double prediction) and classification.
_REGRESSION_LOSSES = frozenset(
    [
        "mean_squared_error",
        "mse",
        "mean_absolute_error",
        "mae",
        "mean_absolute_percentage_error",
        "mape",
        "mean_squared_logarithmic_error",
        "msle",
        "cosine_similarity",
        "huber",
        "huber_loss",
        "log_cosh",
        "logcosh",
        "poisson",
    ]
)


class ElephasCompatWarning(UserWarning):
    """An elephas option that sparkeras accepts but does not use (shown once per option)."""


def _warn_once(option, message):
    if option in _warned:
        return
    _warned.add(option)
    warnings.warn(f"sparkeras.compat.elephas: {message}", ElephasCompatWarning, stacklevel=3)


def _ignored(where, names):
    for name in names:
        _warn_once(
            f"{where}:{name}",
            f"{where} option {name!r} is an elephas (or Keras worker-side) option that "
            "sparkeras does not use; it is ignored and training runs as without it.",
        )


def _spark():
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate()


# Data -----------------------------------------------------------------------


def to_simple_rdd(sc, features, labels):
    """Converts numpy arrays of features and labels into an RDD of `(x, y)` pairs.

    Example:
    >>> rdd = to_simple_rdd(spark.sparkContext, x_train, y_train)
    """
    return sc.parallelize(list(zip(features, labels, strict=True)))


def to_data_frame(sc, features, labels, categorical=False):
    """Converts numpy arrays into a DataFrame of `features` (ml vectors) and `label` (double).

    With `categorical=True` the labels are one-hot rows and `label` gets
    their class index, as elephas does.

    Example:
    >>> df = to_data_frame(spark.sparkContext, x_train, y_train, categorical=True)
    """
    from pyspark.ml.linalg import Vectors

    del sc  # the active session (built on it) makes the DataFrame
    rows = [
        (
            Vectors.dense(np.ravel(x).astype(float)),
            float(np.argmax(y)) if categorical else float(np.asarray(y).reshape(-1)[0]),
        )
        for x, y in zip(features, labels, strict=True)
    ]
    return _spark().createDataFrame(rows, ["features", "label"])


def _widths(shapes):
    return [int(np.prod(shape[1:])) for shape in shapes]


def _split_row(value, widths, what):
    flat = np.ravel(np.asarray(value, dtype="float64"))
    if flat.size != sum(widths):
        raise ValueError(
            f"Each {what} row must have {sum(widths)} values for this model (input/output "
            f"sizes {widths}). Received: a row with {flat.size} values"
        )
    parts, start = [], 0
    for width in widths:
        parts.append(flat[start : start + width].tolist())
        start += width
    return parts


def _pairs_to_frame(rdd, model, with_labels=True, validation_split=0.0):
    """An RDD of `(x, y)` pairs (or `x` rows) as a DataFrame the model's inputs fit.

    Returns `(frame, features_col, label_col)`. With `validation_split` the
    last fraction of each partition is marked in `_VALIDATION`, as Keras'
    `validation_split` holds out the last samples.
    """
    from pyspark.sql import types as T

    input_shapes, output_shapes, _ = options.check_model(model, compiled=False)
    in_widths, out_widths = _widths(input_shapes), _widths(output_shapes)
    first = rdd.first()
    _split_row(first[0] if with_labels else first, in_widths, "feature")  # fail on the driver
    label_kinds = []
    if with_labels:
        for part in _split_labels(first[1], out_widths):
            label_kinds.append(part)
    fields = [
        T.StructField(f"features_{i}", T.ArrayType(T.FloatType())) for i in range(len(in_widths))
    ]
    for index, sample in enumerate(label_kinds):
        integral = isinstance(sample, int)
        kind = (
            (T.LongType() if integral else T.DoubleType())
            if not isinstance(sample, list)
            else T.ArrayType(T.FloatType())
        )
        fields.append(T.StructField(f"label_{index}", kind))
    fields += [T.StructField(_ROW, T.LongType()), T.StructField(_VALIDATION, T.BooleanType())]

    def rows(partition, items):
        items = list(items)
        cut = int(len(items) * (1.0 - validation_split))
        for position, (item, row) in enumerate(items):
            x, y = item if with_labels else (item, None)
            values = _split_row(x, in_widths, "feature")
            if with_labels:
                values += _split_labels(y, out_widths)
            yield (*values, row, position >= cut)

    indexed = rdd.zipWithIndex().mapPartitionsWithIndex(rows)
    frame = _spark().createDataFrame(indexed, T.StructType(fields))
    features = [[f"features_{i}"] for i in range(len(in_widths))]
    labels = [f"label_{i}" for i in range(len(label_kinds))]
    return (
        frame,
        features if len(features) > 1 else "features_0",
        (labels if len(labels) > 1 else labels[0]) if labels else None,
    )


def _split_labels(y, widths):
    """A label row as one value per model output: an int or float, or a list of floats."""
    value = np.asarray(y)
    if value.size == 1 and len(widths) == 1:
        scalar = value.reshape(-1)[0]
        return [int(scalar) if np.issubdtype(value.dtype, np.integer) else float(scalar)]
    return _split_row(value, widths, "label")


# SparkModel -----------------------------------------------------------------

_UNSET = object()


class SparkModel:
    """elephas' `SparkModel`, training with `sparkeras.SparkModel`.

    Args:
        model: A compiled Keras model.
        mode: "asynchronous" (elephas' default), "synchronous" or "hogwild".
        frequency: "epoch" or "batch" (or an int number of steps).
        parameter_server_mode: elephas' "http" or "socket" transport.
            Accepted with a one-time warning: sparkeras always uses its own
            authenticated binary protocol; training is the same.
        num_workers: Training tasks (the RDD is repartitioned to them);
            defaults to every task slot.
        custom_objects: Custom layers, losses and functions of the model.
        batch_size: Default batch size of `fit`, `predict` and `evaluate`.
        port: The parameter server's port (`TrainingConfig.server_port`);
            by default a free port.
        **kwargs: Other elephas options: kept in `get_config()`, otherwise
            ignored with a one-time warning each.

    Example:
    >>> spark_model = SparkModel(model, frequency="epoch", mode="asynchronous")
    >>> spark_model.fit(rdd, epochs=20, batch_size=32, verbose=0, validation_split=0.1)
    """

    def __init__(
        self,
        model,
        mode="asynchronous",
        frequency="epoch",
        parameter_server_mode=_UNSET,
        num_workers=None,
        custom_objects=None,
        batch_size=32,
        port=_UNSET,
        *args,
        **kwargs,
    ):
        options.check_model(model, compiled=True)
        _check_loss_weights(model)
        if args:
            _ignored("SparkModel", [f"positional argument {i + 9}" for i in range(len(args))])
        mode, frequency = getattr(mode, "value", mode), getattr(frequency, "value", frequency)
        self._explicit = {}
        if parameter_server_mode is not _UNSET:
            if parameter_server_mode not in ("http", "socket"):
                raise ValueError(
                    'parameter_server_mode must be "http" or "socket" (elephas\' values). '
                    f"Received: parameter_server_mode={parameter_server_mode!r}"
                )
            _warn_once(
                "parameter_server_mode",
                (
                    f"parameter_server_mode={parameter_server_mode!r} is accepted, but sparkeras "
                    "always uses its own authenticated binary parameter server; training is the "
                    "same."
                ),
            )
            self._explicit["parameter_server_mode"] = parameter_server_mode
        config = None
        if port is not _UNSET:
            config = sparkeras.TrainingConfig(server_port=port)
            self._explicit["port"] = port
        _ignored("SparkModel", sorted(kwargs))
        self._spark_model = sparkeras.SparkModel(
            model,
            mode=mode,
            frequency=frequency,
            num_workers=num_workers,
            config=config,
            custom_objects=custom_objects or None,
        )
        self.batch_size = options.check_positive_int("batch_size", batch_size)
        self.custom_objects = custom_objects or {}
        self.kwargs = kwargs
        self.training_histories = []

    @property
    def master_network(self):
        """The Keras model on the driver, holding the trained weights."""
        return self._spark_model.model

    @master_network.setter
    def master_network(self, network):
        self._spark_model._model = network

    @property
    def mode(self):
        """The training mode."""
        return self._spark_model.mode

    @property
    def frequency(self):
        """How often workers exchange weights."""
        return self._spark_model.frequency

    @property
    def num_workers(self):
        """Training tasks, or None for every task slot."""
        return self._spark_model.num_workers

    @property
    def spark_model(self):
        """The underlying `sparkeras.SparkModel`."""
        return self._spark_model

    def get_config(self):
        """The settings `load_spark_model` rebuilds this model with."""
        return {
            "mode": self.mode,
            "frequency": self.frequency,
            "num_workers": self.num_workers,
            "batch_size": self.batch_size,
            **self._explicit,
            **self.kwargs,
        }

    def fit(self, rdd, **kwargs):
        """Trains on an RDD of `(x, y)` pairs; returns the Keras `History` (global metrics).

        Args:
            rdd: RDD of `(features, label)` numpy pairs, as `to_simple_rdd` makes.
            **kwargs: `epochs` (default 1), `batch_size`, `verbose` (0, 1, 2:
                the driver's progress display), `validation_split` (the last
                fraction of each partition, as Keras holds out the last
                samples), `callbacks` (run on the driver with global logs).
                Other Keras `fit` options are ignored with a one-time warning.
        """
        epochs = kwargs.pop("epochs", 1)
        batch_size = kwargs.pop("batch_size", self.batch_size)
        verbose = kwargs.pop("verbose", 1)
        split = kwargs.pop("validation_split", 0.0) or 0.0
        callbacks = kwargs.pop("callbacks", None)
        _ignored("fit", sorted(kwargs))
        if not 0.0 <= split < 1.0:
            raise ValueError(
                "validation_split must be in [0, 1): the fraction of each partition held out "
                f"for validation. Received: validation_split={split!r}"
            )
        frame, features, label = _pairs_to_frame(rdd, self.master_network, True, split)
        frame = frame.cache()
        try:
            train = frame.filter(~frame[_VALIDATION])
            validation = frame.filter(frame[_VALIDATION]) if split else None
            history = self._spark_model.fit(
                train,
                features_col=features,
                label_col=label,
                epochs=epochs,
                batch_size=batch_size,
                validation_data=validation,
                callbacks=callbacks,
                verbose=verbose,
            )
        finally:
            frame.unpersist()
        self.training_histories.append(history.history)
        return history

    def predict(self, data):
        """Predicts a numpy array or an RDD of feature rows; returns one array per row, in order.

        Example:
        >>> probabilities = spark_model.predict(x_test)   # list of arrays
        """
        from pyspark import RDD

        if isinstance(data, RDD):
            rdd = data
        else:
            rdd = _spark().sparkContext.parallelize(list(np.asarray(data)))
        frame, features, _ = _pairs_to_frame(rdd, self.master_network, with_labels=False)
        _, output_shapes, _ = options.check_model(self.master_network, compiled=False)
        predicted = self._spark_model.predict(
            frame, features_col=features, output_col="prediction", batch_size=self.batch_size,
            raw=True,
        )
        context = frame.sparkSession.sparkContext
        context.setJobDescription("sparkeras predict")
        try:
            rows = predicted.select(_ROW, "prediction").toPandas()
        finally:
            context.setJobDescription(None)
        rows = rows.sort_values(_ROW)
        shape = output_shapes[0][1:]
        return [np.asarray(value, dtype="float32").reshape(shape) for value in rows["prediction"]]

    def evaluate(self, x_test, y_test, **kwargs):
        """Returns the loss, or `[loss, *metrics]` when the model has metrics, as elephas does.

        `batch_size` is honoured and `verbose` has nothing to print; other
        options are ignored with a one-time warning.
        """
        batch_size = kwargs.pop("batch_size", self.batch_size)
        kwargs.pop("verbose", None)
        _ignored("evaluate", sorted(kwargs))
        rdd = to_simple_rdd(_spark().sparkContext, x_test, y_test)
        frame, features, label = _pairs_to_frame(rdd, self.master_network)
        results = self._spark_model.evaluate(
            frame, features_col=features, label_col=label, batch_size=batch_size
        )
        loss = results.pop("loss")
        return [loss, *results.values()] if results else loss

    def save(self, file_name, overwrite=False, to_hadoop=False):
        """Saves the model and these settings to a `.keras` (or legacy `.h5`) file.

        Args:
            file_name: A path, or a URI any `pyarrow.fs` file system opens.
            overwrite: Replace an existing file (otherwise a FileExistsError).
            to_hadoop: Write to HDFS: a bare path is taken as `hdfs://` + path.
        """
        _check_model_file(file_name)
        target = _hadoop_uri(file_name) if to_hadoop else file_name
        with tempfile.TemporaryDirectory(prefix="sparkeras-elephas-") as folder:
            local = os.path.join(folder, os.path.basename(file_name))
            self.master_network.save(local)
            config = {"class_name": "SparkModel", "config": self.get_config()}
            if local.endswith(".h5"):
                import h5py

                with h5py.File(local, mode="a") as handle:
                    handle.attrs["distributed_config"] = json.dumps(config).encode("utf8")
            else:
                with zipfile.ZipFile(local, mode="a") as archive:
                    archive.writestr(_CONFIG_ENTRY, json.dumps(config))
            _put(local, target, overwrite)


def _check_loss_weights(model):
    """Catches tf.keras' `compile(optimizer, loss, metrics)`, which Keras 3 reads otherwise."""
    weights = (model.get_compile_config() or {}).get("loss_weights")
    values = weights.values() if isinstance(weights, dict) else weights or []
    if any(isinstance(value, str) for value in values):
        raise ValueError(
            "The model was compiled with strings as loss_weights: Keras 3's compile is "
            "compile(optimizer, loss, loss_weights, metrics), so a third positional argument "
            "such as ['acc'] (tf.keras' metrics) became loss weights. Compile with "
            f"metrics=[...] by keyword. Received: loss_weights={weights!r}"
        )


def load_spark_model(file_name, from_hadoop=False, custom_objects=None):
    """Loads a model saved by `SparkModel.save` (or by elephas, from an `.h5` file).

    Example:
    >>> spark_model = load_spark_model("model.keras")
    """
    import keras

    _check_model_file(file_name)
    source = _hadoop_uri(file_name) if from_hadoop else file_name
    with tempfile.TemporaryDirectory(prefix="sparkeras-elephas-") as folder:
        local = _get(source, os.path.join(folder, os.path.basename(file_name)))
        config = _read_config(local)
        model = keras.saving.load_model(local, custom_objects=custom_objects)
    settings = dict(config.get("config", {}))
    return SparkModel(model, custom_objects=custom_objects, **settings)


def _check_model_file(file_name):
    if not str(file_name).endswith((".h5", ".keras")):
        raise ValueError(
            "The file name must end with .keras (or .h5, the legacy format). "
            f"Received: file_name={file_name!r}"
        )


def _hadoop_uri(path):
    return path if "://" in path else "hdfs://" + ("" if path.startswith("/") else "/") + path


def _put(local, target, overwrite):
    from pyarrow import fs

    filesystem, path = (
        fs.FileSystem.from_uri(target)
        if "://" in target
        else (fs.LocalFileSystem(), os.path.abspath(target))
    )
    if not overwrite and filesystem.get_file_info(path).type != fs.FileType.NotFound:
        raise FileExistsError(
            f"{target!r} already exists. Pass overwrite=True to replace it. "
            f"Received: file_name={target!r}"
        )
    with open(local, "rb") as source, filesystem.open_output_stream(path) as sink:
        sink.write(source.read())


def _get(source, local):
    from pyarrow import fs

    if "://" not in source:
        return source
    filesystem, path = fs.FileSystem.from_uri(source)
    with filesystem.open_input_stream(path) as stream, open(local, "wb") as sink:
        sink.write(stream.read())
    return local


def _read_config(local):
    if local.endswith(".h5"):
        import h5py

        with h5py.File(local, mode="r") as handle:
            raw = handle.attrs.get("distributed_config")
        return json.loads(raw) if raw is not None else {}
    with zipfile.ZipFile(local) as archive:
        if _CONFIG_ENTRY not in archive.namelist():
            return {}
        return json.loads(archive.read(_CONFIG_ENTRY))


# Spark ML -------------------------------------------------------------------


def _param(name, doc):
    return Param(Params._dummy(), name, doc)


class _ElephasParams(HasFeaturesCol, HasLabelCol, HasOutputCol):
    """elephas' params, with its names (snake_case, as elephas has them)."""

    keras_model_config = _param("keras_model_config", "the Keras model as JSON (model.to_json())")
    optimizer_config = _param(
        "optimizer_config", "the optimizer, serialized (keras.optimizers.serialize)"
    )
    mode = _param("mode", "asynchronous, synchronous or hogwild")
    frequency = _param("frequency", "epoch or batch")
    num_workers = _param("num_workers", "training tasks (None: every task slot)")
    categorical = _param("categorical", "whether labelCol holds class indices to one-hot encode")
    nb_classes = _param("nb_classes", "number of classes, for categorical labels")
    loss = _param("loss", "the Keras loss")
    metrics = _param("metrics", "the Keras metrics")
    validation_split = _param("validation_split", "fraction of rows held out for validation")
    epochs = _param("epochs", "number of epochs")
    batch_size = _param("batch_size", "batch size")
    verbose = _param("verbose", "0, 1 or 2: the driver's progress display")
    custom_objects = _param("custom_objects", "custom layers, losses and functions of the model")
    inference_batch_size = _param("inference_batch_size", "rows per prediction batch")

    def _accessor_defaults(self):
        self._setDefault(
            mode="asynchronous",
            frequency="epoch",
            num_workers=None,
            categorical=True,
            nb_classes=10,
            metrics=["acc"],
            validation_split=0.1,
            epochs=10,
            batch_size=32,
            verbose=0,
            custom_objects={},
            optimizer_config=None,
            inference_batch_size=None,
            outputCol="prediction",
        )

    def get_model(self):
        """A new (uncompiled) Keras model from `keras_model_config`."""
        import keras

        config = self.getOrDefault(self.keras_model_config)
        return keras.models.model_from_json(config, custom_objects=self.get_custom_objects())

    @keyword_only
    def set_params(self, **kwargs):
        """Sets the given params by their elephas names. Returns self."""
        return self._set(**kwargs)


def _add_accessors(cls, names):
    """elephas' `set_<name>` / `get_<name>` pairs (a few have their own names)."""
    special = {"categorical": "categorical_labels", "verbose": "verbosity"}
    for name in names:
        suffix = special.get(name, name)

        def setter(self, value, _name=name):
            return self._set(**{_name: value})

        def getter(self, _name=name):
            return self.getOrDefault(getattr(self, _name))

        setter.__doc__ = f"Sets `{name}`. Returns self."
        getter.__doc__ = f"Returns `{name}`."
        setattr(cls, f"set_{suffix}", setter)
        setattr(cls, f"get_{suffix}", getter)
    return cls


_ESTIMATOR_PARAMS = [
    "keras_model_config",
    "optimizer_config",
    "mode",
    "frequency",
    "num_workers",
    "categorical",
    "nb_classes",
    "loss",
    "metrics",
    "validation_split",
    "epochs",
    "batch_size",
    "verbose",
    "custom_objects",
]


class ElephasEstimator(Estimator, _ElephasParams, DefaultParamsReadable, DefaultParamsWritable):
    """elephas' Spark ML estimator: trains with sparkeras, returns an `ElephasTransformer`.

    Params keep elephas' names: `keras_model_config`, `optimizer_config`,
    `mode`, `frequency`, `num_workers`, `categorical`, `nb_classes`, `loss`,
    `metrics`, `validation_split`, `epochs`, `batch_size`, `verbose`,
    `custom_objects`, `featuresCol`, `labelCol`, `outputCol`; set them in
    the constructor, with `set_params`, or with elephas' `set_*` methods.
    Unset, `num_workers` is every task slot (elephas' default of 8 would
    not fit a smaller cluster).

    Example:
    >>> estimator = ElephasEstimator()
    >>> estimator.set_keras_model_config(model.to_json())
    >>> estimator.set_optimizer_config(keras.optimizers.serialize(keras.optimizers.SGD(0.01)))
    >>> estimator.set_loss("categorical_crossentropy")
    >>> estimator.set_nb_classes(10)
    >>> fitted = Pipeline(stages=[estimator]).fit(df)
    >>> fitted.transform(test_df).select("label", "prediction").show()
    """

    @keyword_only
    def __init__(self, **kwargs):
        super().__init__()
        self._accessor_defaults()
        self._set(**kwargs)

    def get_config(self):
        """The params as a dict, as elephas' `get_config`."""
        return {
            param.name: self.getOrDefault(param)
            for param in self.params
            if self.isDefined(param) and param.name != "custom_objects"
        }

    def save(self, file_name):
        """Saves the params to an `.h5` file (elephas' format); see `load_ml_estimator`."""
        import h5py

        config = {"class_name": type(self).__name__, "config": self.get_config()}
        with h5py.File(file_name, mode="w") as handle:
            handle.attrs["distributed_config"] = json.dumps(config).encode("utf8")

    def setFeaturesCol(self, value):
        """Sets `featuresCol`. Returns self."""
        return self._set(featuresCol=value)

    def setLabelCol(self, value):
        """Sets `labelCol`. Returns self."""
        return self._set(labelCol=value)

    def setOutputCol(self, value):
        """Sets `outputCol`. Returns self."""
        return self._set(outputCol=value)

    def _fit(self, dataset):
        import keras
        from pyspark.sql import functions as F

        if not self.isDefined(self.keras_model_config) or not self.isDefined(self.loss):
            raise ValueError(
                "ElephasEstimator needs keras_model_config (model.to_json()) and loss. "
                "Set them with set_keras_model_config(...) and set_loss(...). "
                f"Received: keras_model_config set={self.isDefined(self.keras_model_config)}, "
                f"loss set={self.isDefined(self.loss)}"
            )
        if self.get_optimizer_config() is None:
            raise ValueError(
                "ElephasEstimator needs optimizer_config: set_optimizer_config("
                "keras.optimizers.serialize(optimizer)). Received: optimizer_config=None"
            )
        model = self.get_model()
        model.compile(
            optimizer=keras.optimizers.get(self.get_optimizer_config()),
            loss=self.get_loss(),
            metrics=self.get_metrics(),
        )
        label = self.getLabelCol()
        if self.get_categorical_labels():
            classes = int(self.get_nb_classes())
            index = F.col(f"`{label}`").cast("int")
            one_hot = F.transform(
                F.sequence(F.lit(0), F.lit(classes - 1)),
                lambda i: F.when(i == index, 1.0).otherwise(0.0),
            )
            dataset, label = dataset.withColumn(_LABEL, one_hot.cast("array<float>")), _LABEL
        split = float(self.get_validation_split() or 0.0)
        train, validation = (
            dataset.randomSplit([1.0 - split, split], seed=0) if split else (dataset, None)
        )
        spark_model = sparkeras.SparkModel(
            model,
            mode=self.get_mode(),
            frequency=self.get_frequency(),
            num_workers=self.get_num_workers(),
            custom_objects=self.get_custom_objects() or None,
        )
        history = spark_model.fit(
            train,
            features_col=self.getFeaturesCol(),
            label_col=label,
            epochs=self.get_epochs(),
            batch_size=self.get_batch_size(),
            validation_data=validation,
            verbose=self.get_verbosity(),
        )
        return ElephasTransformer(
            labelCol=self.getLabelCol(),
            outputCol=self.getOutputCol(),
            featuresCol=self.getFeaturesCol(),
            keras_model_config=model.to_json(),
            custom_objects=self.get_custom_objects(),
            weights=model.get_weights(),
            model_type=_model_type(self.get_loss()),
            history=[history.history],
        )


class ElephasTransformer(Model, _ElephasParams):
    """elephas' Spark ML model: predicts with sparkeras on the executors.

    `outputCol` gets, as in elephas, a double for a regression loss and the
    array of class probabilities (`array<double>`) otherwise.

    Example:
    >>> transformer = estimator.fit(df)
    >>> transformer.transform(test_df).select("prediction").show()
    >>> transformer.save("transformer.h5"); load_ml_transformer("transformer.h5")
    """

    @keyword_only
    def __init__(self, **kwargs):
        super().__init__()
        self._accessor_defaults()
        self.weights = kwargs.pop("weights", None)
        self.model_type = kwargs.pop("model_type", "classification")
        self._history = kwargs.pop("history", [])
        self._set(**kwargs)

    @property
    def history(self):
        """The fit's per-epoch global metrics, one dict per fit (as elephas' list)."""
        return self._history

    def get_config(self):
        """The params, `model_type` and (as lists) the weights, as elephas' `get_config`."""
        config = {
            param.name: self.getOrDefault(param)
            for param in self.params
            if self.isDefined(param) and param.name != "custom_objects"
        }
        config["model_type"] = self.model_type
        return config

    def save(self, file_name):
        """Saves the params and weights to an `.h5` file; see `load_ml_transformer`."""
        import h5py

        config = {"class_name": type(self).__name__, "config": self.get_config()}
        with h5py.File(file_name, mode="w") as handle:
            handle.attrs["distributed_config"] = json.dumps(config).encode("utf8")
            for index, weight in enumerate(self.weights or []):
                handle.create_dataset(f"weights/{index}", data=weight)

    def _keras_model(self):
        model = self.get_model()
        if self.weights is not None:
            model.set_weights(self.weights)
        return model

    def _transform(self, dataset):
        from pyspark.sql import functions as F

        output = self.getOutputCol()
        spark_model = sparkeras.SparkModel(
            self._keras_model(), custom_objects=self.get_custom_objects() or None
        )
        batch = self.get_inference_batch_size() or 1024
        scored = spark_model.predict(
            dataset, features_col=self.getFeaturesCol(), output_col=output, batch_size=batch,
            raw=True,
        )
        column = scored.schema[output].dataType.simpleString()
        value = F.col(f"`{output}`")
        if self.model_type == "regression":
            value = value[0] if column.startswith("array") else value
            return scored.withColumn(output, value.cast("double"))
        value = value if column.startswith("array") else F.array(value)
        return scored.withColumn(output, value.cast("array<double>"))


_add_accessors(_ElephasParams, _ESTIMATOR_PARAMS + ["inference_batch_size"])


def _model_type(loss):
    name = loss if isinstance(loss, str) else getattr(loss, "__name__", "")
    return "regression" if name in _REGRESSION_LOSSES else "classification"


def load_ml_estimator(file_name):
    """Loads an `ElephasEstimator` saved with `save` (by sparkeras or elephas)."""
    import h5py

    with h5py.File(file_name, mode="r") as handle:
        config = json.loads(handle.attrs["distributed_config"])["config"]
    return ElephasEstimator(**config)


def load_ml_transformer(file_name):
    """Loads an `ElephasTransformer` saved with `save` (by sparkeras or elephas)."""
    import h5py

    with h5py.File(file_name, mode="r") as handle:
        config = dict(json.loads(handle.attrs["distributed_config"])["config"])
        if "weights" in handle:
            group = handle["weights"]
            config["weights"] = [np.asarray(group[str(i)]) for i in range(len(group))]
    if config.get("weights") is not None:
        config["weights"] = [np.asarray(w, dtype="float32") for w in config["weights"]]
    model_type = config.get("model_type")
    if isinstance(model_type, dict):  # elephas writes its ModelType enum as a dict
        model_type = str(next(iter(model_type.values()), "")).split(".")[-1]
    config["model_type"] = str(model_type or "classification").lower()
    return ElephasTransformer(**config)
