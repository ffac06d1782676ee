"""Drop-in layers that offer other libraries' APIs on top of sparkeras.

- `sparkeras.compat.elephas`: elephas' `SparkModel`, `load_spark_model`,
  `to_simple_rdd`, `ElephasEstimator` and friends (docs/migrating-from-elephas.md).
"""
