"""Executor-side conversion of bytes to numbers: decode functions and image structs.

Executor module: imports numpy, pyarrow and the neutral data modules only.
`decoded_matrix` runs a user's `decode=` function on one batch of a column's
values and checks what it returns; `image_matrix` reads the structs of
Spark's image data source without a copy per row.
"""

import numpy as np
import pyarrow as pa

from sparkeras.data.errors import DataContentError

__all__ = ["decoded_matrix", "image_matrix"]


def decoded_matrix(decoder, values, source, field):
    """A decode function's array for one batch of a column, as `(n, width)`.

    Args:
        decoder: The `ShippedFunction` (or any callable) of the column.
        values: The column's values in this batch, a list of bytes or str.
        source: The user's column name, for messages.
        field: The `FieldSpec` the column feeds.

    Raises:
        DataContentError: The function raised (naming the column, the first
            row it fails on alone, and the function), or returned something
            other than an array with one row per value (of the input's shape
            when the column is the input's only one).

    Example:
    >>> decoded_matrix(ship(png_to_array), [png, png], "image", field).shape
    (2, 3072)
    """
    name = getattr(decoder, "name", None) or getattr(decoder, "__qualname__", repr(decoder))
    try:
        result = np.asarray(decoder(values))
    except Exception as error:  # the user's code: any error is theirs to see, by row
        row = _failing_row(decoder, values)
        where = (
            f"at row {row} of a batch of {len(values)}"
            if row is not None
            else f"on a batch of {len(values)} rows (each row alone decodes)"
        )
        shown = "?" if row is None else _preview(values[row])
        raise DataContentError(
            f"The decode function {name!r} for column {source!r} raised "
            f"{type(error).__name__}: {error} ({where}). Fix the function, or filter out the "
            f"rows it cannot decode before the fit. Received: column={source!r}, row={row}, "
            f"value={shown}"
        ) from error
    expected = field.shape if len(field.columns) == 1 else None
    if (
        result.ndim == 0
        or len(result) != len(values)
        or result.dtype.kind not in "biufO"
        or (expected is not None and int(np.prod(result.shape[1:])) != field.size)
    ):
        wanted = f"(n, *{expected})" if expected is not None else "(n, ...)"
        raise DataContentError(
            f"The decode function {name!r} for column {source!r} returned an array of shape "
            f"{result.shape} and dtype {result.dtype} for a batch of n={len(values)} values, but "
            f"{field.role} (shape {(None, *field.shape)}) needs a numeric array of shape "
            f"{wanted}: one row per value, in order. Make the function return that, or change "
            f"the model's input. Received: shape={result.shape}"
        )
    return result.reshape(len(values), -1)


def image_matrix(array, source, field):
    """Image structs (height, width, nChannels, data) as `(n, H * W * C)` uint8, RGB.

    Spark's image data source stores pixels as OpenCV does: rows of BGR (or
    BGRA) bytes. They are turned into RGB (RGBA); one channel stays as is.

    Raises:
        DataContentError: A null image, or an image whose size differs from
            the model input's `(H, W, C)`.

    Example:
    >>> image_matrix(table.column("__sparkeras_x0_0").chunk(0), "image", field).shape
    (64, 3072)
    """
    height, width, channels = field.shape
    size = height * width * channels
    names = [array.type.field(i).name for i in range(array.type.num_fields)]
    parts = dict(zip(names, array.flatten(), strict=True))
    data = parts["data"]
    nulls = data.null_count  # flatten() marks the fields of a null struct null too
    if nulls:
        raise DataContentError(
            f"Image column {source!r} has {nulls} null image(s) or null pixel data; a model "
            f"cannot take missing values. First drop them, e.g. "
            f"df.na.drop(subset=[{source!r}]) or df.filter(F.col('{source}.data').isNotNull()). "
            f"Received: column={source!r} with {nulls} null(s)"
        )
    sizes = np.stack([parts[key].to_numpy(zero_copy_only=False)
                      for key in ("height", "width", "nChannels")], axis=1)
    offsets = _offsets(data)
    odd = np.flatnonzero(
        (sizes != (height, width, channels)).any(axis=1) | (np.diff(offsets) != size)
    )
    if odd.size:
        row = int(odd[0])
        found = tuple(int(v) for v in sizes[row])
        raise DataContentError(
            f"Image column {source!r} holds an image of height x width x channels "
            f"{found[0]} x {found[1]} x {found[2]} ({int(offsets[row + 1] - offsets[row])} "
            f"bytes) at row {row} of this batch ({odd.size} image(s) differ), but {field.role} "
            f"takes {height} x {width} x {channels} (shape {(None, *field.shape)}). Resize "
            "the images to the model's input before the fit (or read them with decode= and "
            f"resize there). Received: size={found}"
        )
    pixels = np.frombuffer(data.buffers()[2], dtype=np.uint8)
    images = pixels[offsets[0] : offsets[0] + len(data) * size].reshape(
        len(data), height, width, channels
    )
    if channels in (3, 4):
        images = images[..., [2, 1, 0, 3][:channels]]
    return images.reshape(len(data), size)


def _offsets(data):
    """The value offsets of a (large_)binary array, slice offset applied."""
    offset_type = np.int64 if pa.types.is_large_binary(data.type) else np.int32
    offsets = np.frombuffer(data.buffers()[1], dtype=offset_type)
    return offsets[data.offset : data.offset + len(data) + 1].astype(np.int64)


def _failing_row(decoder, values):
    """The first row that the decoder fails on alone, or None."""
    for row, value in enumerate(values):
        try:
            decoder([value])
        except Exception:  # any error of the user's function marks the row
            return row
    return None


def _preview(value):
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
