"""Spark ML stages: `KerasEstimator` trains, `KerasTransformer` predicts.

Driver-side package. Both stages follow pyspark.ml's conventions (typed
camelCase params, `copy`, `write()`/`load`), so they fit in a `Pipeline`,
`CrossValidator` or `TrainValidationSplit`, and save with them.

Example:
>>> from sparkeras.ml import KerasEstimator
>>> transformer = KerasEstimator(model=compiled_model, epochs=5, numWorkers=2).fit(train_df)
>>> transformer.transform(test_df).select("label", "prediction").show()
"""

from sparkeras.ml.estimator import KerasEstimator
from sparkeras.ml.transformer import KerasTransformer

__all__ = ["KerasEstimator", "KerasTransformer"]
