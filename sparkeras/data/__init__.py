"""The data layer: DataFrame columns in, numpy arrays for Keras out.

Driver side (`schema`): `resolve_data_spec` checks the columns against the
model from the schema alone, `projection` gives the JVM-side conversions to
select before `mapInArrow`, `prediction_fields` the prediction columns' types.
Executor side (`convert`): `batches_to_arrays` and `predictions_to_arrow`.
The driver-side names load on first use, so executors importing this package
never import pyspark.sql through it.

Example:
>>> from sparkeras.data import resolve_data_spec, projection, batches_to_arrays
>>> spec = resolve_data_spec(df.schema, "features", "label", [(None, 784)], [(None, 10)])
>>> table = df.select(*projection(spec)).toArrow()
>>> x, y = batches_to_arrays(table, spec)
"""

from sparkeras.data.convert import batches_to_arrays, keras_inputs, predictions_to_arrow
from sparkeras.data.errors import DataContentError, DataSchemaError
from sparkeras.data.spec import DataSpec, FieldSpec

__all__ = [
    "DataContentError",
    "DataSchemaError",
    "DataSpec",
    "FieldSpec",
    "batches_to_arrays",
    "keras_inputs",
    "prediction_fields",
    "predictions_to_arrow",
    "projection",
    "resolve_data_spec",
]

_DRIVER_NAMES = ("prediction_fields", "projection", "resolve_data_spec")


def __getattr__(name):
    if name in _DRIVER_NAMES:
        from sparkeras.data import schema

        return getattr(schema, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
