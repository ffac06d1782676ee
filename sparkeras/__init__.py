"""sparkeras: train and serve Keras 3 models on Spark DataFrames.

Example:
>>> import sparkeras
>>> spark = sparkeras.get_spark("local[2]")
>>> sm = sparkeras.SparkModel(model, num_workers=2)
>>> sm.fit(df, features_col="features", label_col="label", epochs=3)
"""

from sparkeras import quiet

quiet.quiet_tensorflow()  # before anything imports TensorFlow, when sparkeras comes first

from sparkeras.options import TrainingConfig  # noqa: E402
from sparkeras.session import get_spark  # noqa: E402
from sparkeras.spark_model import SparkModel  # noqa: E402

__all__ = ["KerasEstimator", "KerasTransformer", "SparkModel", "TrainingConfig", "get_spark"]
__version__ = "0.1.0"

_ML_NAMES = ("KerasEstimator", "KerasTransformer")


def __getattr__(name):
    # The Spark ML stages import pyspark.ml: load them on first use only.
    if name in _ML_NAMES:
        from sparkeras import ml

        return getattr(ml, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
