"""elephas 7.1's public API on top of sparkeras: switch by changing one import prefix.

Neutral package; its modules mirror elephas' own, so `from elephas.X import Y`
becomes `from sparkeras.compat.elephas.X import Y`:

    spark_model       SparkModel, AsynchronousSparkModel, SparkMLlibModel, load_spark_model
    ml_model          ElephasEstimator, ElephasTransformer, load_ml_estimator, load_ml_transformer
    enums             Mode, Frequency
    utils.rdd_utils   to_simple_rdd, to_labeled_point, from_labeled_point, encode_label,
                      lp_to_simple_rdd
    utils.model_utils ModelType, LossModelTypeMapper, ModelTypeEncoder, as_enum,
                      is_multiple_input_model, is_multiple_output_model
    ml.adapter        to_data_frame, from_data_frame, df_to_simple_rdd
    ml.params         the Has* param mixins
    mllib.adapter     to_matrix, from_matrix, to_vector, from_vector

Every fit, prediction and evaluation runs through `sparkeras.SparkModel`.
The names most scripts use are importable from here too (loaded on first
use, so executors importing a helper module load no driver code).

Example:
>>> from sparkeras.compat.elephas.spark_model import SparkModel
>>> from sparkeras.compat.elephas.utils.rdd_utils import to_simple_rdd
>>> spark_model = SparkModel(model, num_workers=2)
>>> spark_model.fit(to_simple_rdd(spark.sparkContext, x_train, y_train), epochs=5)
"""

import importlib

_HOMES = {
    "ElephasCompatWarning": "_warnings",
    "AsynchronousSparkModel": "spark_model",
    "SparkMLlibModel": "spark_model",
    "SparkModel": "spark_model",
    "load_spark_model": "spark_model",
    "ElephasEstimator": "ml_model",
    "ElephasTransformer": "ml_model",
    "load_ml_estimator": "ml_model",
    "load_ml_transformer": "ml_model",
    "Frequency": "enums",
    "Mode": "enums",
    "to_simple_rdd": "utils.rdd_utils",
    "to_labeled_point": "utils.rdd_utils",
    "from_labeled_point": "utils.rdd_utils",
    "encode_label": "utils.rdd_utils",
    "lp_to_simple_rdd": "utils.rdd_utils",
    "ModelType": "utils.model_utils",
    "LossModelTypeMapper": "utils.model_utils",
    "to_data_frame": "ml.adapter",
    "from_data_frame": "ml.adapter",
    "df_to_simple_rdd": "ml.adapter",
}

__all__ = sorted(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
