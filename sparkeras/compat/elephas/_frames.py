"""RDDs of `(x, y)` numpy pairs (or `x` rows) as DataFrames of array columns.

Driver-side module: the row function it maps over the RDD runs on the
executors and copies plain values only (widths, the split fraction).
"""

import numpy as np

from sparkeras import options

ROW = "__elephas_row"
VALIDATION = "__elephas_validation"


def active_spark():
    """The active SparkSession (elephas' functions take a SparkContext or nothing)."""
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate()


def _widths(shapes):
    return [int(np.prod(shape[1:])) for shape in shapes]


def _split_row(value, widths, what):
    flat = np.ravel(np.asarray(value, dtype="float64"))
    if flat.size != sum(widths):
        raise ValueError(
            f"Each {what} row must have {sum(widths)} values for this model (input/output "
            f"sizes {widths}). Received: a row with {flat.size} values"
        )
    parts, start = [], 0
    for width in widths:
        parts.append(flat[start : start + width].tolist())
        start += width
    return parts


def pairs_to_frame(rdd, model, with_labels=True, validation_split=0.0):
    """An RDD of `(x, y)` pairs (or `x` rows) as a DataFrame the model's inputs fit.

    Returns `(frame, features_col, label_col)`. With `validation_split` the
    last fraction of each partition is marked in `VALIDATION`, as Keras'
    `validation_split` holds out the last samples.
    """
    from pyspark.sql import types as T

    input_shapes, output_shapes, _ = options.check_model(model, compiled=False)
    in_widths, out_widths = _widths(input_shapes), _widths(output_shapes)
    first = rdd.first()
    _split_row(first[0] if with_labels else first, in_widths, "feature")  # fail on the driver
    label_kinds = _split_labels(first[1], out_widths) if with_labels else []
    fields = [
        T.StructField(f"features_{i}", T.ArrayType(T.FloatType())) for i in range(len(in_widths))
    ]
    for index, sample in enumerate(label_kinds):
        integral = isinstance(sample, int)
        kind = (
            (T.LongType() if integral else T.DoubleType())
            if not isinstance(sample, list)
            else T.ArrayType(T.FloatType())
        )
        fields.append(T.StructField(f"label_{index}", kind))
    fields += [T.StructField(ROW, T.LongType()), T.StructField(VALIDATION, T.BooleanType())]

    def rows(items):
        cut = None
        if validation_split:  # the partition's length decides its last fraction
            items = list(items)
            cut = int(len(items) * (1.0 - validation_split))
        for position, (item, row) in enumerate(items):
            x, y = item if with_labels else (item, None)
            values = _split_row(x, in_widths, "feature")
            if with_labels:
                values += _split_labels(y, out_widths)
            yield (*values, row, cut is not None and position >= cut)

    indexed = rdd.zipWithIndex().mapPartitions(rows)
    frame = active_spark().createDataFrame(indexed, T.StructType(fields))
    features = [[f"features_{i}"] for i in range(len(in_widths))]
    labels = [f"label_{i}" for i in range(len(label_kinds))]
    return (
        frame,
        features if len(features) > 1 else "features_0",
        (labels if len(labels) > 1 else labels[0]) if labels else None,
    )


def _split_labels(y, widths):
    """A label row as one value per model output: an int or float, or a list of floats."""
    value = np.asarray(y)
    if value.size == 1 and len(widths) == 1:
        scalar = value.reshape(-1)[0]
        return [int(scalar) if np.issubdtype(value.dtype, np.integer) else float(scalar)]
    return _split_row(value, widths, "label")
