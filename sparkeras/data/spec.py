"""Plain descriptions of the data a model takes, shared by driver and executors.

Neutral module: no pyspark or keras imports. A `DataSpec` is built on the
driver by `resolve_data_spec`, pickles small, and tells the executor how to
turn the projected Arrow columns into numpy arrays.
"""

import math
from dataclasses import dataclass

__all__ = ["DataSpec", "FieldSpec", "is_scalar_row"]


@dataclass(frozen=True)
class FieldSpec:
    """One model input or one model target, and the columns that feed it.

    The columns of a field are concatenated horizontally, row by row, then
    reshaped to `shape`.

    Attributes:
        columns: Internal names of the projected columns (`__sparkeras_...`).
        source_columns: The user's column names, in the same order, for messages.
        kinds: Per column, "vector" (VectorUDT), "array" (array<numeric>) or
            "scalar" (one numeric value).
        widths: Per column, its number of values per row when the driver knows
            it (1 for scalars, the ML attribute count for assembled vectors),
            else None.
        shape: Per-row shape the model takes, e.g. `(8, 8, 1)`, or `()` for a
            class-index label.
        dtype: numpy dtype name of the array handed to Keras, e.g. "float32".
        role: What the field feeds, for messages, e.g. "model input 0".

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
