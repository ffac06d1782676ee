"""The Spark ML params of `KerasEstimator` and `KerasTransformer`.

Driver-side module. Params are declared once here, camelCase, typed by a
converter that rejects a bad value when it is set, not when the fit starts.
The Keras model is a param too: its value is a `KerasModelBytes`, the
model's `.keras` bytes, which `copy()` shares safely because it never
changes; every fit rebuilds a fresh model from it. So is `decode`, the
`decode=` function(s) of `SparkModel` (saved pickled by value beside the
metadata, see `sparkeras.ml.persistence`).
"""

import os

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (
    HasFeaturesCol,
    HasLabelCol,
    HasPredictionCol,
    HasProbabilityCol,
    HasSeed,
)

from sparkeras import options

__all__ = ["KerasEstimatorParams", "KerasModelBytes", "KerasModelParams", "frequency_value"]


class KerasModelBytes:
    """A Keras model kept as the bytes of its `.keras` file: the value of the `model` param.

    It never changes once built, so copies of a stage may share it. Use
    `to_model()` for a model of your own; the transformers use
    `shared_model()`, built once and only ever read.

    Args:
        data: The bytes of a `.keras` file.

    Example:
    >>> value = KerasModelBytes.of(model)
    >>> value.to_model().predict(x)
    """

    __slots__ = ("data", "_shared")

    def __init__(self, data):
        self.data = bytes(data)
        self._shared = None

    @classmethod
    def of(cls, model):
        """Serialises a `keras.Model` (weights, compile state and all)."""
        from sparkeras.common.model_io import model_to_bytes

        return cls(model_to_bytes(model))

    def to_model(self):
        """Returns a new compiled `keras.Model` rebuilt from the bytes."""
        from sparkeras.common.model_io import model_from_bytes

        return model_from_bytes(self.data)

    def shared_model(self):
        """Returns one model rebuilt on first use, for read-only use such as prediction."""
        if self._shared is None:
            self._shared = self.to_model()
        return self._shared

    def __repr__(self):
        return f"KerasModelBytes({len(self.data)} bytes)"


def _to_model_bytes(value):
    """Param converter: a `keras.Model` or a `.keras` file path to `KerasModelBytes`."""
    import keras

    if isinstance(value, KerasModelBytes):
        return value
    if isinstance(value, keras.Model):
        return KerasModelBytes.of(value)
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if not path.endswith(".keras") or not os.path.isfile(path):
            raise ValueError(
                "model must be a keras.Model or the path of an existing .keras file (saved "
                f"with model.save('name.keras')). Received: model={path!r}"
            )
        with open(path, "rb") as handle:
            return KerasModelBytes(handle.read())
    raise TypeError(
        "model must be a keras.Model or the path of a .keras file. "
        f"Received: model of type {type(value).__name__}"
    )


def _to_decode(value):
    """Param converter: a decode function or `{column: function}`, checked."""
    from sparkeras.data.decode import check_decode

    return check_decode(value)


def _to_positive_int(name):
    def convert(value):
        return options.check_positive_int(name, TypeConverters.toInt(value))

    return convert


def _to_mode(value):
    return options.check_mode(TypeConverters.toString(value))


def _to_frequency(value):
    """Param converter: "epoch", "batch" or a number of steps, kept as a string."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = TypeConverters.toString(value)
    options.steps_per_round(frequency_value(text))
    return text


def frequency_value(text):
    """The `frequency` argument of `SparkModel` for a `frequency` param value.

    Example:
    >>> frequency_value("10"), frequency_value("epoch")
    (10, 'epoch')
    """
    return int(text) if text.isdigit() else text


def _to_pruning(value):
    """Param converter: a `sparkeras.pruning.DNS` (or its config dict), kept as its config."""
    from sparkeras.pruning import DNS

    if isinstance(value, DNS):
        return value.get_config()
    if isinstance(value, dict):
        return DNS(**value).get_config()
    raise TypeError(
        "pruning must be a sparkeras.pruning.DNS (or its get_config() dict). "
        f"Received: pruning={type(value).__name__}"
    )


def _to_fraction(value):
    fraction = TypeConverters.toFloat(value)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(
            "validationFraction must be in [0, 1): the share of rows held out for "
            f"validation, 0 for none. Received: validationFraction={value!r}"
        )
    return fraction


class KerasModelParams(HasFeaturesCol, HasPredictionCol, HasProbabilityCol):
    """Params shared by `KerasEstimator` and `KerasTransformer`.

    `predictionCol` gets the predicted class as a double when the model has
    one output of shape `(None, k)` with k >= 2 (argmax, so Spark's
    `MulticlassClassificationEvaluator` works), and `probabilityCol` the
    output itself as an `array<float>` (set it to "" to leave it out).
    Otherwise `predictionCol` gets the model's output as `SparkModel.predict`
    writes it: a double for one unit, else an array, one column per output
    named `{predictionCol}_{output name}` for several outputs.
    """

    model = Param(
        Params._dummy(),
        "model",
        "the Keras model: a keras.Model or the path of a .keras file, kept as its .keras "
        "bytes (compiled, for fitting)",
        typeConverter=_to_model_bytes,
    )

    decode = Param(
        Params._dummy(),
        "decode",
        "function run on the executors that turns a list of a binary (or string) feature "
        "column's values into a numpy array, one row per value; or {column: function}",
        typeConverter=_to_decode,
    )

    def getDecode(self):
        """Returns the value of `decode`, or None.

        Example:
        >>> KerasTransformer(model=trained, decode=png_to_array).getDecode()
        <function png_to_array at ...>
        """
        return self.getOrDefault(self.decode) if self.isDefined(self.decode) else None

    def setDecode(self, value):
        """Sets `decode` (a function or `{column: function}`, None for none). Returns self."""
        return self._set(decode=value)

    def getModel(self):
        """Returns a new `keras.Model` rebuilt from the `model` param.

        Example:
        >>> KerasTransformer(model=trained).getModel().summary()
        """
        return self._model_bytes().to_model()

    def setModel(self, value):
        """Sets `model` to a `keras.Model` (compiled, to fit) or a `.keras` path. Returns self."""
        return self._set(model=value)

    def setFeaturesCol(self, value):
        """Sets `featuresCol`. Returns self."""
        return self._set(featuresCol=value)

    def setPredictionCol(self, value):
        """Sets `predictionCol`. Returns self."""
        return self._set(predictionCol=value)

    def setProbabilityCol(self, value):
        """Sets `probabilityCol`. Returns self."""
        return self._set(probabilityCol=value)

    def _model_bytes(self):
        value = self.getOrDefault(self.model) if self.isDefined(self.model) else None
        if value is None:
            raise ValueError(
                f"{type(self).__name__} has no Keras model. Pass one: "
                f"{type(self).__name__}(model=keras_model) or .setModel('model.keras'). "
                "Received: model=None"
            )
        return value


class KerasEstimatorParams(KerasModelParams, HasLabelCol, HasSeed):
    """Params of `KerasEstimator`: the model's params plus how to train it."""

    epochs = Param(
        Params._dummy(),
        "epochs",
        "passes over the training data (>= 1)",
        typeConverter=_to_positive_int("epochs"),
    )
    batchSize = Param(
        Params._dummy(),
        "batchSize",
        "samples per training step on each worker (>= 1)",
        typeConverter=_to_positive_int("batchSize"),
    )
    mode = Param(
        Params._dummy(),
        "mode",
        "how workers combine their updates: synchronous, asynchronous or hogwild",
        typeConverter=_to_mode,
    )
    frequency = Param(
        Params._dummy(),
        "frequency",
        "when workers exchange weights: epoch, batch, or a number of steps such as '10'",
        typeConverter=_to_frequency,
    )
    numWorkers = Param(
        Params._dummy(),
        "numWorkers",
        "training tasks, one model replica each; every task slot if unset",
        typeConverter=_to_positive_int("numWorkers"),
    )
    validationCol = Param(
        Params._dummy(),
        "validationCol",
        "boolean column marking validation rows: held out of training, they give the "
        "val_ metrics of the history (excludes validationFraction)",
        typeConverter=TypeConverters.toString,
    )
    validationFraction = Param(
        Params._dummy(),
        "validationFraction",
        "share of rows in [0, 1) held out at random (by seed) for validation, 0 for none",
        typeConverter=_to_fraction,
    )
    pruning = Param(
        Params._dummy(),
        "pruning",
        "Dynamic Network Surgery settings (a sparkeras.pruning.DNS, kept as its config), "
        "to prune while training (synchronous mode); unset for none",
        typeConverter=_to_pruning,
    )

    def getEpochs(self):
        """Returns the value of `epochs`."""
        return self.getOrDefault(self.epochs)

    def getBatchSize(self):
        """Returns the value of `batchSize`."""
        return self.getOrDefault(self.batchSize)

    def getMode(self):
        """Returns the value of `mode`."""
        return self.getOrDefault(self.mode)

    def getFrequency(self):
        """Returns the value of `frequency`, a string."""
        return self.getOrDefault(self.frequency)

    def getNumWorkers(self):
        """Returns the value of `numWorkers`, or None for every task slot."""
        return self.getOrDefault(self.numWorkers) if self.isDefined(self.numWorkers) else None

    def getValidationCol(self):
        """Returns the value of `validationCol`, or None."""
        return self.getOrDefault(self.validationCol) if self.isDefined(self.validationCol) else None

    def getPruning(self):
        """Returns a new `sparkeras.pruning.DNS` from the `pruning` param, or None."""
        from sparkeras.pruning import DNS

        return DNS(**self.getOrDefault(self.pruning)) if self.isDefined(self.pruning) else None

    def getValidationFraction(self):
        """Returns the value of `validationFraction`."""
        return self.getOrDefault(self.validationFraction)
