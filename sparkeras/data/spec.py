"""Plain descriptions of the data a model takes, shared by driver and executors.

Neutral module: no pyspark or keras imports. A `DataSpec` is built on the
driver by `resolve_data_spec`, pickles small, and tells the executor how to
turn the projected Arrow columns into numpy arrays.
"""

import math
import pickle
from dataclasses import dataclass

__all__ = ["DataSpec", "FieldSpec", "ShippedFunction", "is_scalar_row"]


class ShippedFunction:
    """A user function (a `decode=` function) pickled by value on the driver.

    It travels inside the `DataSpec` as bytes and is unpickled once per
    Python worker process on first call, so the executors need no copy of the
    module that defined it (the modules it imports, e.g. PIL, must be there).
    Build one with `sparkeras.data.decode.ship` on the driver.

    Attributes:
        data: The function, pickled with cloudpickle by value.
        name: Its qualified name, for messages.

    Example:
    >>> decoder = ship(png_to_array)
    >>> decoder([png_bytes]).shape
    (1, 32, 32, 3)
    """

    __slots__ = ("data", "name", "_function")

    def __init__(self, data, name):
        self.data = bytes(data)
        self.name = name
        self._function = None

    def __call__(self, values):
        if self._function is None:
            self._function = pickle.loads(self.data)
        return self._function(values)

    def __getstate__(self):
        return {"data": self.data, "name": self.name}

    def __setstate__(self, state):
        self.data, self.name, self._function = state["data"], state["name"], None

    def __eq__(self, other):
        return isinstance(other, ShippedFunction) and other.data == self.data

    def __hash__(self):
        return hash(self.data)

    def __repr__(self):
        return f"ShippedFunction({self.name!r}, {len(self.data)} bytes)"


@dataclass(frozen=True)
class FieldSpec:
    """One model input or one model target, and the columns that feed it.

    The columns of a field are concatenated horizontally, row by row, then
    reshaped to `shape`.

    Attributes:
        columns: Internal names of the projected columns (`__sparkeras_...`).
        source_columns: The user's column names, in the same order, for messages.
        kinds: Per column, "vector" (VectorUDT), "array" (array<numeric>),
            "scalar" (one numeric value), "decoded" (binary or string values
            a `decode=` function turns into numbers), "image" (a struct of
            Spark's image data source) or "string" (text for a model input
            of dtype string).
        widths: Per column, its number of values per row when the driver knows
            it (1 for scalars, the ML attribute count for assembled vectors),
            else None.
        shape: Per-row shape the model takes, e.g. `(8, 8, 1)`, or `()` for a
            class-index label.
        dtype: numpy dtype name of the array handed to Keras, e.g. "float32".
        role: What the field feeds, for messages, e.g. "model input 0".
        decoders: Per column, the `ShippedFunction` that decodes it, or None;
            None for a field without decoded columns.

    Example:
    >>> FieldSpec(("__sparkeras_x0_0",), ("features",), ("vector",), (None,),
    ...           (784,), "float32", "model input 0").size
    784
    """

    columns: tuple
    source_columns: tuple
    kinds: tuple
    widths: tuple
    shape: tuple
    dtype: str
    role: str
    decoders: tuple = None

    @property
    def size(self):
        """Number of values per row the model takes: the product of `shape`."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class DataSpec:
    """How the rows of a DataFrame become a model's inputs and targets.

    Attributes:
        inputs: One `FieldSpec` per model input, in the model's input order.
        targets: One `FieldSpec` per model output; empty when there are no labels.
        prediction_shapes: Per-row shape of each model output (batch dim dropped),
            which decides the type of the prediction columns.

    Example:
    >>> spec = resolve_data_spec(df.schema, "features", "label", [(None, 4)], [(None, 3)])
    >>> spec.columns
    ('__sparkeras_x0_0', '__sparkeras_y0_0')
    """

    inputs: tuple
    targets: tuple
    prediction_shapes: tuple

    @property
    def columns(self):
        """All internal projected column names, inputs first then targets."""
        return tuple(name for field in (*self.inputs, *self.targets) for name in field.columns)


def is_scalar_row(shape):
    """Whether a per-row output shape is written as one double per row.

    Outputs with per-row shape `()` or `(1,)` become a DoubleType column; any
    other shape becomes an array<float> column holding the row flattened.

    Example:
    >>> is_scalar_row((1,)), is_scalar_row((10,))
    (True, False)
    """
    return tuple(shape) in ((), (1,))
