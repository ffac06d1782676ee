"""Model kinds by loss, their JSON form, and model input/output checks.

Neutral module (`elephas.utils.model_utils`): the standard library only, and
the Keras model it is given.
"""

import json
from enum import Enum

__all__ = [
    "LossModelTypeMapper",
    "ModelType",
    "ModelTypeEncoder",
    "as_enum",
    "is_multiple_input_model",
    "is_multiple_output_model",
]


class ModelType(Enum):
    """What a model predicts: class probabilities or a number.

    `ElephasTransformer` writes an array of probabilities for
    `CLASSIFICATION` and a double for `REGRESSION`.

    Example:
    >>> LossModelTypeMapper().get_model_type("mse")
    <ModelType.REGRESSION: 2>
    """

    CLASSIFICATION = 1
    REGRESSION = 2


_REGRESSION_LOSSES = (
    "mean_squared_error", "mse", "mean_absolute_error", "mae",
    "mean_absolute_percentage_error", "mape", "mean_squared_logarithmic_error", "msle",
    "cosine_proximity", "cosine_similarity", "huber", "huber_loss", "log_cosh", "logcosh",
    "poisson",
)
_CLASSIFICATION_LOSSES = (
    "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
    "binary_focal_crossentropy", "categorical_focal_crossentropy", "hinge",
    "categorical_hinge", "squared_hinge", "kl_divergence", "kld",
)


class LossModelTypeMapper:
    """Maps a loss to the `ModelType` it trains; one shared instance, as in elephas.

    Register a custom loss so that `ElephasEstimator` gives its model the
    right kind of prediction column. A loss nobody registered maps to None,
    which the transformer treats as classification.

    Example:
    >>> def pinball(y_true, y_pred): ...
    >>> LossModelTypeMapper().register_loss(pinball, ModelType.REGRESSION)
    >>> LossModelTypeMapper().get_model_type("pinball")
    <ModelType.REGRESSION: 2>
    """

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            instance = super().__new__(cls)
            instance._mapping = {name: ModelType.REGRESSION for name in _REGRESSION_LOSSES}
            instance._mapping.update(
                {name: ModelType.CLASSIFICATION for name in _CLASSIFICATION_LOSSES}
            )
            cls._instance = instance
        return cls._instance

    def get_model_type(self, loss):
        """The `ModelType` of `loss` (a name, a function or a Keras loss), or None."""
        return self._mapping.get(_loss_name(loss))

    def register_loss(self, loss, model_type):
        """Maps `loss` (a name, a function or a Keras loss) to `model_type`."""
        if not isinstance(model_type, ModelType):
            raise ValueError(
                "model_type must be ModelType.CLASSIFICATION or ModelType.REGRESSION. "
                f"Received: model_type={model_type!r}"
            )
        self._mapping[_loss_name(loss)] = model_type


def _loss_name(loss):
    if isinstance(loss, str):
        return loss
    return getattr(loss, "__name__", None) or getattr(loss, "name", None) or repr(loss)


class ModelTypeEncoder(json.JSONEncoder):
    """A JSON encoder that writes a `ModelType` as `{"__enum__": "ModelType.NAME"}`.

    Example:
    >>> json.dumps({"model_type": ModelType.REGRESSION}, cls=ModelTypeEncoder)
    '{"model_type": {"__enum__": "ModelType.REGRESSION"}}'
    """

    def default(self, o):
        if isinstance(o, ModelType):
            return {"__enum__": str(o)}
        return super().default(o)


def as_enum(d):
    """A `json.loads` object hook that turns `ModelTypeEncoder`'s dicts back into members.

    Example:
    >>> json.loads('{"t": {"__enum__": "ModelType.REGRESSION"}}', object_hook=as_enum)
    {'t': <ModelType.REGRESSION: 2>}
    """
    if "__enum__" not in d:
        return d
    _, _, member = str(d["__enum__"]).rpartition(".")
    if member not in ModelType.__members__:
        raise ValueError(
            "An encoded model type must name a ModelType member (CLASSIFICATION or "
            f"REGRESSION). Received: __enum__={d['__enum__']!r}"
        )
    return ModelType[member]


def is_multiple_input_model(model):
    """Whether a Keras model takes several inputs.

    Example:
    >>> is_multiple_input_model(keras.Model([a, b], out))
    True
    """
    return isinstance(model.input_shape, list)


def is_multiple_output_model(model):
    """Whether a Keras model has several outputs.

    Example:
    >>> is_multiple_output_model(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]))
    False
    """
    return isinstance(model.output_shape, list)
