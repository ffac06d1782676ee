"""Errors raised by the data layer.

Neutral module: importable on executors without pyspark.
"""

__all__ = ["DataContentError", "DataSchemaError"]


class DataSchemaError(ValueError):
    """The DataFrame's schema does not fit the model or the arguments given.

    Raised on the driver, before any Spark job runs: an unknown column, a
    non-numeric type, a wrong number of column groups, or a width that the
    schema already shows to differ from the model's input or output.

    Example:
    >>> raise DataSchemaError("Column 'featurs' is not in the DataFrame. Received: ...")
    """


class DataContentError(ValueError):
    """The rows themselves do not fit the model.

    Raised on executors while converting Arrow batches: null values, arrays of
    different lengths, or array widths that differ from the model's shapes.

    Example:
    >>> raise DataContentError("Column 'features' has 2 null value(s). Received: ...")
    """
