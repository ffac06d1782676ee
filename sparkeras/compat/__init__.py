"""Drop-in layers that offer other libraries' APIs on top of sparkeras.

- `sparkeras.compat.elephas`: elephas 7.1's public API in elephas' module
  layout (`sparkeras.compat.elephas.spark_model`, `.ml_model`, `.utils.rdd_utils`,
  ...), so switching is one import prefix (docs/migrating-from-elephas.md).
"""
