"""elephas' Spark ML stages (`elephas.ml_model`), training and predicting with sparkeras.

Driver-side module. `ElephasEstimator` compiles the model from its params and
fits it with `sparkeras.SparkModel` on the DataFrame itself; the
`ElephasTransformer` it returns predicts with `sparkeras.SparkModel.predict`
(Arrow batches on the executors, rows and columns kept in order).

Example:
>>> estimator = ElephasEstimator(keras_model_config=model.to_json(), loss="mse",
...                              optimizer_config=keras.optimizers.serialize(opt),
...                              categorical=False)
>>> estimator.fit(df).transform(test_df).select("label", "prediction").show()
"""

import warnings

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param
from pyspark.ml.param.shared import HasFeaturesCol, HasLabelCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

import sparkeras
from sparkeras.compat.elephas import _files
from sparkeras.compat.elephas.ml.params import (
    HasBatchSize,
    HasCategoricalLabels,
    HasCustomObjects,
    HasEpochs,
    HasFrequency,
    HasInferenceBatchSize,
    HasKerasModelConfig,
    HasKerasOptimizerConfig,
    HasLoss,
    HasMetrics,
    HasMode,
    HasNumberOfClasses,
    HasNumberOfWorkers,
    HasValidationSplit,
    HasVerbosity,
)
from sparkeras.compat.elephas.utils.model_utils import (
    LossModelTypeMapper,
    ModelType,
    ModelTypeEncoder,
    as_enum,
)

__all__ = ["ElephasEstimator", "ElephasTransformer", "load_ml_estimator", "load_ml_transformer"]

_LABEL = "__elephas_label"


class _ModelParams(HasKerasModelConfig, HasCustomObjects):
    """The Keras model as JSON, rebuilt with its custom objects."""

    def get_model(self):
        """A new (uncompiled) Keras model from `keras_model_config`.

        Example:
        >>> estimator.get_model().summary()
        """
        import keras

        return keras.models.model_from_json(
            self.get_keras_model_config(), custom_objects=self.get_custom_objects()
        )

    @keyword_only
    def set_params(self, **kwargs):
        """Sets the given params by their elephas names. Returns self.

        Example:
        >>> estimator.set_params(epochs=5, batch_size=64)
        """
        return self._set(**kwargs)

    def _defined_params(self):
        return {
            param.name: self.getOrDefault(param)
            for param in self.params
            if self.isDefined(param) and param.name != "custom_objects"
        }


def _deprecated_setter(name):
    def setter(self, value):
        warnings.warn(
            f"set{name[0].upper()}{name[1:]} is deprecated, as in elephas: pass {name} to the "
            f"constructor instead, e.g. ElephasEstimator({name}='...').",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._set(**{name: value})

    setter.__doc__ = f"Sets `{name}` with a DeprecationWarning (pass it to the constructor)."
    return setter


class ElephasEstimator(
    Estimator, _ModelParams, HasCategoricalLabels, HasValidationSplit, HasFeaturesCol,
    HasLabelCol, HasMode, HasEpochs, HasBatchSize, HasFrequency, HasVerbosity,
    HasNumberOfClasses, HasNumberOfWorkers, HasOutputCol, HasLoss, HasMetrics,
    HasKerasOptimizerConfig, HasInferenceBatchSize, DefaultParamsReadable, DefaultParamsWritable,
):
    """elephas' Spark ML estimator: trains with sparkeras, returns an `ElephasTransformer`.

    Params keep elephas' names (`keras_model_config`, `optimizer_config`,
    `mode`, `frequency`, `num_workers`, `categorical`, `nb_classes`, `loss`,
    `metrics`, `validation_split`, `epochs`, `batch_size`, `verbose`,
    `custom_objects`, `featuresCol`, `labelCol`, `outputCol`); set them in
    the constructor, with `set_params`, or with elephas' `set_*` methods.
    `mode` defaults to synchronous (elephas 7 trains synchronously) and
    `num_workers` to every task slot (elephas' 8 may not fit a cluster).

    Example:
    >>> estimator = ElephasEstimator()
    >>> estimator.set_keras_model_config(model.to_json())
    >>> estimator.set_optimizer_config(keras.optimizers.serialize(keras.optimizers.SGD(0.01)))
    >>> estimator.set_loss("categorical_crossentropy")
    >>> estimator.set_nb_classes(10)
    >>> fitted = Pipeline(stages=[estimator]).fit(df)
    """

    @keyword_only
    def __init__(self, **kwargs):
        super().__init__()
        self._setDefault(outputCol="prediction")
        self._set(**kwargs)

    setFeaturesCol = _deprecated_setter("featuresCol")
    setLabelCol = _deprecated_setter("labelCol")
    setOutputCol = _deprecated_setter("outputCol")

    def get_config(self):
        """The params as a dict (`custom_objects` left out), as elephas' `get_config`.

        Example:
        >>> ElephasEstimator(**estimator.get_config())
        """
        return self._defined_params()

    def save(self, file_name):
        """Saves the params to an `.h5` file (elephas' format); see `load_ml_estimator`.

        Example:
        >>> estimator.save("estimator.h5"); load_ml_estimator("estimator.h5")
        """
        config = {"class_name": type(self).__name__, "config": self.get_config()}
        _files.write_h5_config(file_name, config).close()

    def _fit(self, dataset):
        import keras

        self._check_ready()
        model = self.get_model()
        loss = self.get_loss()
        model.compile(
            optimizer=keras.optimizers.get(self.get_optimizer_config()),
            loss=loss,
            metrics=self.get_metrics(),
        )
        dataset, label = self._labels(dataset)
        split = float(self.get_validation_split() or 0.0)
        train, validation = (
            dataset.randomSplit([1.0 - split, split], seed=0) if split else (dataset, None)
        )
        spark_model = sparkeras.SparkModel(
            model,
            mode=getattr(self.get_mode(), "value", self.get_mode()),
            frequency=getattr(self.get_frequency(), "value", self.get_frequency()),
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
            inference_batch_size=self.get_inference_batch_size(),
            weights=model.get_weights(),
            model_type=LossModelTypeMapper().get_model_type(loss),
            history=[history.history],
        )

    def _check_ready(self):
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

    def _labels(self, dataset):
        """The dataset and its label column: class indices one-hot encoded if categorical."""
        from pyspark.sql import functions as F

        label = self.getLabelCol()
        if not self.get_categorical_labels():
            return dataset, label
        classes = int(self.get_nb_classes())
        index = F.col(f"`{label}`").cast("int")
        one_hot = F.transform(
            F.sequence(F.lit(0), F.lit(classes - 1)),
            lambda i: F.when(i == index, 1.0).otherwise(0.0),
        )
        return dataset.withColumn(_LABEL, one_hot.cast("array<float>")), _LABEL


class ElephasTransformer(
    Model, _ModelParams, HasLabelCol, HasOutputCol, HasFeaturesCol, HasInferenceBatchSize
):
    """elephas' Spark ML model: predicts with sparkeras on the executors.

    `outputCol` gets, as in elephas, a double for a `ModelType.REGRESSION`
    model and the array of class probabilities (`array<double>`) otherwise.
    `model_type` is a `ModelType`, its name ("regression"), or None.

    Example:
    >>> transformer = estimator.fit(df)
    >>> transformer.transform(test_df).select("prediction").show()
    >>> transformer.save("transformer.h5"); load_ml_transformer("transformer.h5")
    """

    @keyword_only
    def __init__(self, **kwargs):
        super().__init__()
        self._setDefault(outputCol="prediction")
        self.weights = kwargs.pop("weights", None)
        self.model_type = _as_model_type(kwargs.pop("model_type", None))
        self._history = kwargs.pop("history", [])
        self._set(**kwargs)

    @property
    def history(self):
        """The fit's per-epoch global metrics, one dict per fit (as elephas' list)."""
        return self._history

    def get_config(self):
        """The params, `model_type` and the weights (as lists), as elephas' `get_config`.

        Example:
        >>> transformer.get_config()["model_type"]
        <ModelType.CLASSIFICATION: 1>
        """
        config = self._defined_params()
        config["weights"] = [np.asarray(w).tolist() for w in self.weights or []]
        config["model_type"] = self.model_type
        return config

    def save(self, file_name):
        """Saves the params, model type and weights to an `.h5` file; see `load_ml_transformer`.

        Example:
        >>> transformer.save("transformer.h5")
        """
        config = {k: v for k, v in self.get_config().items() if k != "weights"}
        document = {"class_name": type(self).__name__, "config": config}
        with _files.write_h5_config(file_name, document, encoder=ModelTypeEncoder) as handle:
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
        scored = spark_model.predict(
            dataset, features_col=self.getFeaturesCol(), output_col=output,
            batch_size=self.get_inference_batch_size() or 1024, raw=True,
        )
        column = scored.schema[output].dataType.simpleString()
        value = F.col(f"`{output}`")
        if self.model_type is ModelType.REGRESSION:
            value = value[0] if column.startswith("array") else value
            return scored.withColumn(output, value.cast("double"))
        value = value if column.startswith("array") else F.array(value)
        return scored.withColumn(output, value.cast("array<double>"))


def _as_model_type(value):
    """A `ModelType` (or None) from a member, its name, or `ModelTypeEncoder`'s dict."""
    if value is None or isinstance(value, ModelType):
        return value
    return as_enum(value if isinstance(value, dict) else {"__enum__": str(value).upper()})


def load_ml_estimator(file_name):
    """Loads an `ElephasEstimator` saved with `save` (here or by elephas).

    Example:
    >>> estimator = load_ml_estimator("estimator.h5")
    """
    return ElephasEstimator(**_files.read_h5_config(file_name)["config"])


def load_ml_transformer(file_name):
    """Loads an `ElephasTransformer` saved with `save` (here or by elephas).

    Weights come from the file's datasets (written here) or from the config
    (elephas writes them as lists).

    Example:
    >>> transformer = load_ml_transformer("transformer.h5")
    """
    import h5py

    config = dict(_files.read_h5_config(file_name, object_hook=as_enum)["config"])
    with h5py.File(file_name, mode="r") as handle:
        if "weights" in handle:
            group = handle["weights"]
            config["weights"] = [np.asarray(group[str(i)]) for i in range(len(group))]
    if config.get("weights") is not None:
        config["weights"] = [np.asarray(w, dtype="float32") for w in config["weights"]]
    # Files of earlier versions of this layer also hold the estimator's params.
    kept = {
        key: value for key, value in config.items()
        if key in ("weights", "model_type")
        or isinstance(getattr(ElephasTransformer, key, None), Param)
    }
    return ElephasTransformer(**kept)
