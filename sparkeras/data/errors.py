"""Errors raised by the data layer.

Neutral module: importable on executors without pyspark.
"""

import re

__all__ = ["DataContentError", "DataSchemaError", "content_error_in"]


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


def content_error_in(error):
    """The `DataContentError` an executor raised inside a Spark job error, or None.

    Spark wraps an executor's exception in its own (a `PythonException` or a
    `Py4JJavaError` holding the worker's traceback as text); this finds the
    data layer's message in that text, so a driver call can raise it bare.

    Example:
    >>> try:
    ...     rows = frame.mapInArrow(task, ddl).collect()
    ... except Exception as error:
    ...     raise content_error_in(error) or error
    """
    found = re.search(r"DataContentError: (.+)", str(error))
    return None if found is None else DataContentError(found.group(1).strip())
