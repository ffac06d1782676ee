"""elephas' `SparkModel` family on RDDs, training with `sparkeras.SparkModel`.

Driver-side module (`elephas.spark_model`). An RDD of `(x, y)` numpy pairs
becomes a DataFrame of array columns (`_frames`), which the core fits,
evaluates and predicts on. As in elephas 7, `SparkModel` trains
synchronously unless told otherwise; `AsynchronousSparkModel` defaults to
asynchronous training; `SparkMLlibModel` takes RDDs of `LabeledPoint`s.

Example:
>>> from sparkeras.compat.elephas.spark_model import SparkModel
>>> from sparkeras.compat.elephas.utils.rdd_utils import to_simple_rdd
>>> spark_model = SparkModel(model, num_workers=2)
>>> spark_model.fit(to_simple_rdd(sc, x_train, y_train), epochs=5, batch_size=32)
>>> spark_model.evaluate(x_test, y_test)          # [loss, accuracy]
"""

import numpy as np

import sparkeras
from sparkeras import options
from sparkeras.compat.elephas import _files
from sparkeras.compat.elephas._compile import repair_positional_metrics
from sparkeras.compat.elephas._frames import ROW, VALIDATION, active_spark, pairs_to_frame
from sparkeras.compat.elephas._warnings import ignored, warn_once
from sparkeras.compat.elephas.enums.frequency import Frequency
from sparkeras.compat.elephas.enums.modes import Mode
from sparkeras.compat.elephas.mllib.adapter import from_matrix, from_vector, to_matrix, to_vector
from sparkeras.compat.elephas.utils.rdd_utils import (
    lp_to_simple_rdd,
    parallelize_rows,
    to_simple_rdd,
)

__all__ = ["AsynchronousSparkModel", "SparkMLlibModel", "SparkModel", "load_spark_model"]

_UNSET = object()


class SparkModel:
    """elephas' `SparkModel`: trains a compiled Keras model on an RDD of `(x, y)` pairs.

    Args:
        model: A compiled Keras model (`compile(opt, loss, ["acc"])`, tf.keras'
            positional metrics, is repaired with a one-time warning).
        num_workers: Training tasks (the data is spread over them); defaults
            to every task slot.
        custom_objects: Custom layers, losses and functions of the model.
        batch_size: Default batch size of `fit`, `predict` and `evaluate`.
        *args: Accepted and ignored with a one-time warning.
        **kwargs: `mode` ("synchronous", elephas 7's only mode here, by
            default; "asynchronous" and "hogwild" as elephas 6 had them),
            `frequency` ("epoch" or "batch"), `port` (the parameter server's
            port; by default a free one), `parameter_server_mode` ("http" or
            "socket", accepted with a warning: sparkeras has one protocol).
            Others are kept in `get_config()` and ignored with a warning each.

    Example:
    >>> spark_model = SparkModel(model, num_workers=2)
    >>> spark_model.fit(rdd, epochs=20, batch_size=32, verbose=0, validation_split=0.1)
    """

    def __init__(self, model, num_workers=None, custom_objects=None, batch_size=32, *args,
                 **kwargs):
        options.check_model(model, compiled=True)
        repair_positional_metrics(model)
        if args:
            ignored(type(self).__name__, [f"positional argument {i + 5}" for i in range(len(args))])
        mode, frequency = (kwargs.pop("mode", Mode.SYNCHRONOUS),
                           kwargs.pop("frequency", Frequency.EPOCH))
        mode, frequency = getattr(mode, "value", mode), getattr(frequency, "value", frequency)
        self._explicit = {"mode": mode, "frequency": frequency}
        config = self._server_options(kwargs.pop("parameter_server_mode", _UNSET),
                                      kwargs.pop("port", _UNSET))
        ignored(type(self).__name__, sorted(kwargs))
        self._spark_model = sparkeras.SparkModel(
            model, mode=mode, frequency=frequency, num_workers=num_workers, config=config,
            custom_objects=custom_objects or None,
        )
        self.batch_size = options.check_positive_int("batch_size", batch_size)
        self.custom_objects = custom_objects or {}
        self.kwargs = kwargs
        self.training_histories = []

    def _server_options(self, parameter_server_mode, port):
        """elephas' server options: the transport is checked and noted, the port honoured."""
        if parameter_server_mode is not _UNSET:
            if parameter_server_mode not in ("http", "socket"):
                raise ValueError(
                    'parameter_server_mode must be "http" or "socket" (elephas\' values). '
                    f"Received: parameter_server_mode={parameter_server_mode!r}"
                )
            warn_once(
                "parameter_server_mode",
                f"parameter_server_mode={parameter_server_mode!r} is accepted, but sparkeras "
                "always uses its own authenticated binary parameter server; training is the "
                "same.",
            )
            self._explicit["parameter_server_mode"] = parameter_server_mode
        if port is _UNSET:
            return None
        self._explicit["port"] = port
        return sparkeras.TrainingConfig(server_port=port)

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
            "num_workers": self.num_workers,
            "batch_size": self.batch_size,
            **self._explicit,
            **self.kwargs,
        }

    def fit(self, rdd, **kwargs):
        """Trains on an RDD of `(x, y)` pairs; returns the Keras `History` (global metrics).

        The converted rows are never cached or persisted: they stream from
        the RDD into the fit (a cached columnar copy of elephas' MNIST data
        outgrows a 1 GB driver heap, even persisted to disk only). With
        `validation_split` the RDD is read once for each side, so its rows
        must come in the same order each time (as `to_simple_rdd`'s do).

        Args:
            rdd: RDD of `(features, label)` numpy pairs, as `to_simple_rdd` makes.
            **kwargs: `epochs` (default 1), `batch_size`, `verbose` (0, 1, 2:
                the driver's progress display), `validation_split` (the last
                fraction of each partition, as Keras holds out the last
                samples), `callbacks` (run on the driver with global logs).
                Other Keras `fit` options are ignored with a one-time warning.

        Example:
        >>> history = spark_model.fit(rdd, epochs=5, batch_size=32, validation_split=0.1)
        >>> history.history["val_loss"]
        """
        epochs = kwargs.pop("epochs", 1)
        batch_size = kwargs.pop("batch_size", self.batch_size)
        verbose = kwargs.pop("verbose", 1)
        split = kwargs.pop("validation_split", 0.0) or 0.0
        callbacks = kwargs.pop("callbacks", None)
        ignored("fit", sorted(kwargs))
        if not 0.0 <= split < 1.0:
            raise ValueError(
                "validation_split must be in [0, 1): the fraction of each partition held out "
                f"for validation. Received: validation_split={split!r}"
            )
        frame, features, label = pairs_to_frame(rdd, self.master_network, True, split)
        history = self._spark_model.fit(
            frame.filter(~frame[VALIDATION]) if split else frame,
            features_col=features,
            label_col=label,
            epochs=epochs,
            batch_size=batch_size,
            validation_data=frame.filter(frame[VALIDATION]) if split else None,
            callbacks=callbacks,
            verbose=verbose,
        )
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
            data = np.asarray(data)
            rdd = parallelize_rows(active_spark().sparkContext, list(data), data.nbytes)
        frame, features, _ = pairs_to_frame(rdd, self.master_network, with_labels=False)
        _, output_shapes, _ = options.check_model(self.master_network, compiled=False)
        predicted = self._spark_model.predict(
            frame, features_col=features, output_col="prediction", batch_size=self.batch_size,
            raw=True,
        )
        context = frame.sparkSession.sparkContext
        context.setJobDescription("sparkeras predict")
        try:
            rows = predicted.select(ROW, "prediction").toPandas()
        finally:
            context.setJobDescription(None)
        rows = rows.sort_values(ROW)
        shape = output_shapes[0][1:]
        return [np.asarray(value, dtype="float32").reshape(shape) for value in rows["prediction"]]

    def evaluate(self, x_test, y_test, **kwargs):
        """Returns the loss, or `[loss, *metrics]` when the model has metrics, as elephas does.

        `batch_size` is honoured and `verbose` has nothing to print; other
        options are ignored with a one-time warning.

        Example:
        >>> loss, accuracy = spark_model.evaluate(x_test, y_test)
        """
        batch_size = kwargs.pop("batch_size", self.batch_size)
        kwargs.pop("verbose", None)
        ignored("evaluate", sorted(kwargs))
        rdd = to_simple_rdd(active_spark().sparkContext, x_test, y_test)
        frame, features, label = pairs_to_frame(rdd, self.master_network)
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

        Example:
        >>> spark_model.save("model.keras"); load_spark_model("model.keras")
        """
        config = {"class_name": type(self).__name__, "config": self.get_config()}
        _files.save_model(self.master_network, file_name, config, overwrite, to_hadoop)


class AsynchronousSparkModel(SparkModel):
    """elephas 7's asynchronous `SparkModel`: workers push updates as they go.

    Args:
        model: A compiled Keras model.
        num_workers: Training tasks; defaults to every task slot.
        custom_objects: Custom layers, losses and functions of the model.
        batch_size: Default batch size of `fit`, `predict` and `evaluate`.
        mode: `Mode.ASYNCHRONOUS` (default), `Mode.HOGWILD` (no server
            lock) or `Mode.SYNCHRONOUS`, or their strings.
        frequency: `Frequency.EPOCH` (default) or `Frequency.BATCH`, or an
            int number of steps.
        parameter_server_mode: elephas' "http" (default) or "socket":
            sparkeras always uses its own authenticated binary protocol.
        port: The parameter server's port; by default a free port (elephas
            binds 4000).
        *args: Accepted and ignored with a one-time warning.
        **kwargs: Kept in `get_config()`, ignored with a one-time warning each.

    Example:
    >>> spark_model = AsynchronousSparkModel(model, frequency="epoch", mode="asynchronous")
    >>> spark_model.fit(rdd, epochs=20, batch_size=32, verbose=0, validation_split=0.1)
    """

    def __init__(self, model, num_workers=None, custom_objects=None, batch_size=32,
                 mode=Mode.ASYNCHRONOUS, frequency=Frequency.EPOCH, parameter_server_mode="http",
                 port=_UNSET, *args, **kwargs):
        server = {} if port is _UNSET else {"port": port}
        if parameter_server_mode != "http":
            server["parameter_server_mode"] = parameter_server_mode
        super().__init__(model, num_workers, custom_objects, batch_size, *args, mode=mode,
                         frequency=frequency, **server, **kwargs)
        self._explicit.setdefault("parameter_server_mode", parameter_server_mode)


class SparkMLlibModel(SparkModel):
    """elephas' `SparkModel` for MLlib data: trains on RDDs of `LabeledPoint`s.

    Takes `SparkModel`'s arguments. `fit` (also named `train`, as elephas'
    README calls it) converts the points with `lp_to_simple_rdd`; `predict`
    takes an MLlib `Matrix` (one sample per row) or `Vector` (one sample).

    Example:
    >>> lp_rdd = to_labeled_point(sc, x_train, y_train, categorical=True)
    >>> spark_model = SparkMLlibModel(model, frequency="epoch", mode="synchronous")
    >>> spark_model.fit(lp_rdd, epochs=5, categorical=True, nb_classes=10)
    >>> spark_model.predict(to_matrix(x_test))      # an MLlib Matrix of probabilities
    """

    def fit(self, labeled_points, epochs=10, batch_size=32, verbose=0, validation_split=0.1,
            categorical=False, nb_classes=None):
        """Trains on an RDD of `LabeledPoint`s; returns the Keras `History`.

        With `categorical=True` the labels (class indices) are one-hot encoded
        to `nb_classes` (by default the largest label plus one).
        """
        rdd = lp_to_simple_rdd(labeled_points, categorical, nb_classes)
        return super().fit(rdd, epochs=epochs, batch_size=batch_size, verbose=verbose,
                           validation_split=validation_split)

    train = fit

    def predict(self, mllib_data):
        """Predicts an MLlib `Matrix` (rows are samples) or `Vector`; returns the same kind.

        Example:
        >>> spark_model.predict(to_vector(x_test[0]))   # an MLlib Vector of probabilities
        """
        from pyspark.mllib.linalg import Matrix, Vector

        if isinstance(mllib_data, Matrix):
            return to_matrix(np.stack(super().predict(from_matrix(mllib_data))))
        if isinstance(mllib_data, Vector):
            return to_vector(np.ravel(super().predict(from_vector(mllib_data)[None])[0]))
        raise ValueError(
            "SparkMLlibModel.predict takes an MLlib Matrix or Vector (pyspark.mllib.linalg); "
            "for numpy arrays or RDDs use SparkModel.predict. "
            f"Received: mllib_data={type(mllib_data).__name__}"
        )


_CLASSES = {cls.__name__: cls for cls in (SparkModel, AsynchronousSparkModel, SparkMLlibModel)}


def load_spark_model(file_name, from_hadoop=False, custom_objects=None):
    """Loads a model saved by `save` (here or by elephas, `.keras` or `.h5`).

    Returns the class it was saved from (`SparkModel`, `AsynchronousSparkModel`
    or `SparkMLlibModel`) with its settings.

    Example:
    >>> spark_model = load_spark_model("model.keras")
    >>> spark_model = load_spark_model("/models/model.h5", from_hadoop=True)
    """
    model, config = _files.load_model(file_name, from_hadoop, custom_objects)
    cls = _CLASSES.get(config.get("class_name"), SparkModel)
    return cls(model, custom_objects=custom_objects, **dict(config.get("config", {})))
