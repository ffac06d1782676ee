"""elephas' Spark ML param mixins (`elephas.ml.params`), with its accessors.

Neutral module (driver in practice). Each `Has*` mixin declares one param,
its default, and elephas' `set_<name>`/`get_<name>` pair; the params are
ordinary Spark ML params, so `Pipeline` persistence and param maps work.
"""

from pyspark.ml.param import Param, Params

_NONE = object()

# (mixin, param, accessor suffix, default, doc). `mode` defaults to elephas 7's
# synchronous training (its param still says "asynchronous", which elephas 7 ignores).
_MIXINS = [
    ("HasKerasModelConfig", "keras_model_config", "keras_model_config", _NONE,
     "the Keras model as JSON (model.to_json())"),
    ("HasMode", "mode", "mode", "synchronous",
     "training mode: synchronous, asynchronous or hogwild"),
    ("HasFrequency", "frequency", "frequency", "epoch",
     "when workers exchange weights: epoch or batch"),
    ("HasNumberOfClasses", "nb_classes", "nb_classes", 10,
     "number of classes, for categorical labels"),
    ("HasCategoricalLabels", "categorical", "categorical_labels", True,
     "whether the label column holds class indices to one-hot encode"),
    ("HasEpochs", "epochs", "epochs", 10, "number of epochs to train"),
    ("HasBatchSize", "batch_size", "batch_size", 32, "batch size"),
    ("HasVerbosity", "verbose", "verbosity", 0, "0, 1 or 2: the driver's progress display"),
    ("HasValidationSplit", "validation_split", "validation_split", 0.1,
     "fraction of rows held out for validation"),
    ("HasNumberOfWorkers", "num_workers", "num_workers", None,
     "training tasks (None: every task slot)"),
    ("HasKerasOptimizerConfig", "optimizer_config", "optimizer_config", None,
     "the optimizer, serialized (keras.optimizers.serialize)"),
    ("HasMetrics", "metrics", "metrics", ["acc"], "the Keras metrics"),
    ("HasLoss", "loss", "loss", _NONE, "the Keras loss"),
    ("HasCustomObjects", "custom_objects", "custom_objects", {},
     "custom layers, losses and functions of the model"),
    ("HasInferenceBatchSize", "inference_batch_size", "inference_batch_size", None,
     "rows per prediction batch (None: 1024)"),
]

__all__ = [name for name, *_ in _MIXINS]


def _mixin(class_name, name, suffix, default, doc):
    """A Params mixin with one param, its default and elephas' accessors."""

    def __init__(self):
        super(cls, self).__init__()
        if default is not _NONE:
            self._setDefault(**{name: default})

    def setter(self, value):
        return self._set(**{name: value})

    def getter(self):
        return self.getOrDefault(name)

    setter.__name__, setter.__doc__ = f"set_{suffix}", f"Sets `{name}` ({doc}). Returns self."
    getter.__name__, getter.__doc__ = f"get_{suffix}", f"Returns `{name}` ({doc})."
    shown = "" if default is _NONE else f" Default: {default!r}."
    cls = type(class_name, (Params,), {
        "__module__": __name__,
        "__doc__": (
            f"Param mixin for `{name}`: {doc}.{shown}\n\n"
            f"    Example:\n    >>> estimator.set_{suffix}(...).get_{suffix}()\n"
        ),
        "__init__": __init__,
        name: Param(Params._dummy(), name, doc),
        f"set_{suffix}": setter,
        f"get_{suffix}": getter,
    })
    return cls


for _spec in _MIXINS:
    globals()[_spec[0]] = _mixin(*_spec)
del _spec
