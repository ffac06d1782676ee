"""The `decode=` argument on the driver: checked, then pickled by value.

Driver module. A decode function turns one batch of a `binary` (or `string`)
column's values, a list of `bytes` (or `str`), into a numpy array with one
row per value, on the executors. `check_decode` validates the argument when
it is given (before any Spark job), `ship` pickles a function by value so
executors need no copy of the module that defined it, and `dumps_by_value`
gives the bytes the Spark ML stages save beside their metadata.
"""

import os
import sys
import sysconfig

from sparkeras.data.errors import DataSchemaError
from sparkeras.data.spec import ShippedFunction

__all__ = ["check_decode", "dumps_by_value", "function_name", "ship"]

_INSTALLED = tuple(
    os.path.realpath(path)
    for path in {sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib")}
)


def check_decode(decode):
    """Returns `decode` as None, a callable, or a dict of column name to callable.

    Args:
        decode: None, a function of a list of values, or `{column: function}`.

    Raises:
        DataSchemaError: Anything else.

    Example:
    >>> check_decode({"image": png_to_array})
    {'image': <function png_to_array at ...>}
    """
    if decode is None or (callable(decode) and not isinstance(decode, type)):
        return decode
    if isinstance(decode, dict) and decode and all(
        isinstance(name, str) and callable(function) for name, function in decode.items()
    ):
        return dict(decode)
    raise DataSchemaError(
        "decode must be a function, run on the executors, that turns a list of a column's "
        "values (bytes or str) into a numpy array with one row per value, or a dict "
        "{column: function} for several columns. "
        f"Received: decode={decode!r}"
    )


def function_name(function):
    """A readable name of a decode function for messages, e.g. 'png_to_array'.

    Example:
    >>> function_name(lambda values: values)
    '<lambda>'
    """
    target = getattr(function, "func", function)  # functools.partial
    return getattr(target, "__qualname__", None) or type(target).__name__


def ship(function):
    """The function as a `ShippedFunction` for the `DataSpec`.

    Example:
    >>> ship(png_to_array).name
    'png_to_array'
    """
    return ShippedFunction(dumps_by_value(function), function_name(function))


def dumps_by_value(value):
    """Pickles `value` with cloudpickle, its functions' own modules by value.

    Modules installed in the interpreter (the standard library and
    site-packages: numpy, PIL) stay references, as they exist on every
    executor; the user's own modules (a script, a notebook, a test file) are
    copied in, so executors need not import them.

    Example:
    >>> pickle.loads(dumps_by_value({"image": png_to_array}))["image"]
    """
    from pyspark import cloudpickle

    functions = value.values() if isinstance(value, dict) else [value]
    modules = {_own_module(function) for function in functions} - {None}
    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    try:
        return cloudpickle.dumps(value)
    finally:
        for module in modules:
            cloudpickle.unregister_pickle_by_value(module)


def _own_module(function):
    """The user's module defining `function`, or None when it is installed or __main__."""
    target = getattr(function, "func", function)
    name = getattr(target, "__module__", None) or getattr(type(target), "__module__", None)
    module = sys.modules.get(name or "")
    path = getattr(module, "__file__", None)
    if module is None or name == "__main__" or path is None:
        return None  # __main__ and builtins: cloudpickle's defaults apply
    if os.path.realpath(path).startswith(_INSTALLED):
        return None
    return module
