"""Executor-side conversion: batches_to_arrays and predictions_to_arrow.

Most cases build a real DataFrame, select `projection(spec)` and convert the
Arrow batches Spark returns, so the JVM-side casts are covered too.
"""

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import types as T

from sparkeras.data import (
    DataContentError,
    batches_to_arrays,
    prediction_fields,
    predictions_to_arrow,
    projection,
    resolve_data_spec,
)


def _arrays(df, features_col, label_col, input_shapes, output_shapes=((None, 1),), **kwargs):
    """Resolves, projects in Spark, and converts the batches Spark hands back."""
    spec = resolve_data_spec(
        df.schema, features_col, label_col, input_shapes, output_shapes, **kwargs
    )
    batches = df.select(*projection(spec)).toArrow().to_batches()
    return batches_to_arrays(batches, spec)


def _spec(schema, features_col, label_col, input_shapes, output_shapes=((None, 1),)):
    return resolve_data_spec(schema, features_col, label_col, input_shapes, output_shapes)


@pytest.mark.spark
def test_dense_and_sparse_vectors_with_class_labels(spark):
    df = spark.createDataFrame(
        [(Vectors.dense([1.0, 2.0, 3.0]), 0), (Vectors.sparse(3, [1], [5.0]), 2)] * 3,
        ["features", "label"],
    )
    x, y = _arrays(df.orderBy("label"), "features", "label", [(None, 3)], [(None, 3)])
    assert x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(x, [[1, 2, 3]] * 3 + [[0, 5, 0]] * 3)
    np.testing.assert_array_equal(y, [0, 0, 0, 2, 2, 2])


@pytest.mark.spark
@pytest.mark.parametrize("element", [T.DoubleType(), T.FloatType(), T.IntegerType()])
def test_numeric_arrays(spark, element):
    df = spark.createDataFrame([([1, 2, 3, 4],), ([5, 6, 7, 8],)], "pixels array<int>")
    df = df.select(df.pixels.cast(T.ArrayType(element)).alias("pixels"))
    x, y = _arrays(df, "pixels", None, [(None, 4)])
    assert y is None and x.dtype == np.float32
    np.testing.assert_array_equal(x, [[1, 2, 3, 4], [5, 6, 7, 8]])


@pytest.mark.spark
def test_numeric_columns_are_concatenated_in_order(spark):
    df = spark.createDataFrame(
        [(1.5, 2, 3, Decimal("0.25"))], "a double, b int, c long, d decimal(4,2)"
    )
    x, _ = _arrays(df, ["c", "a", "d", "b"], None, [(None, 4)])
    np.testing.assert_array_equal(x, np.array([[3, 1.5, 0.25, 2]], np.float32))


@pytest.mark.spark
def test_vector_array_and_scalar_widths_add_up(spark):
    df = spark.createDataFrame([(Vectors.dense([1.0, 2.0]), [3.0], 4.0)], ["v", "arr", "s"])
    x, _ = _arrays(df, ["v", "s", "arr"], None, [(None, 4)])
    np.testing.assert_array_equal(x, [[1, 2, 4, 3]])


@pytest.mark.spark
def test_multi_input_groups_in_model_order(spark):
    df = spark.createDataFrame(
        [(1.0, 2.0, [1.0, 2.0, 3.0, 4.0], 7), (3.0, 4.0, [5.0, 6.0, 7.0, 8.0], 9)],
        ["a", "b", "img", "token"],
    )
    x, _ = _arrays(
        df,
        [["a", "b"], "img", ["token"]],
        None,
        [(None, 2), (None, 2, 2), (None,)],
        input_dtypes=["float32", "float32", "int32"],
    )
    assert [part.shape for part in x] == [(2, 2), (2, 2, 2), (2,)]
    np.testing.assert_array_equal(x[0], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(x[1][1], [[5, 6], [7, 8]])
    assert x[2].dtype == np.int32
    np.testing.assert_array_equal(x[2], [7, 9])


@pytest.mark.spark
def test_image_rows_are_reshaped(spark):
    df = spark.createDataFrame([([float(i) for i in range(64)], 1)], ["pixels", "label"])
    x, y = _arrays(df, "pixels", "label", [(None, 8, 8, 1)], [(None, 10)])
    assert x.shape == (1, 8, 8, 1)
    np.testing.assert_array_equal(x[0, :, :, 0], np.arange(64).reshape(8, 8))
    np.testing.assert_array_equal(y, [1])


@pytest.mark.spark
def test_float_and_one_hot_and_multi_output_labels(spark):
    df = spark.createDataFrame(
        [
            (Vectors.dense([1.0]), 0.5, [0.0, 1.0, 0.0], Vectors.dense([1.0, 0.0]), 2.0, 1),
            (Vectors.dense([2.0]), -1.5, [1.0, 0.0, 0.0], Vectors.dense([0.0, 1.0]), 0.0, 0),
        ],
        ["f", "price", "onehot", "onehot_vec", "indexed", "flag"],
    )
    _, y = _arrays(df, "f", "price", [(None, 1)], [(None, 1)])
    assert y.dtype == np.float32 and y.shape == (2, 1)
    np.testing.assert_array_equal(y[:, 0], [0.5, -1.5])
    _, y = _arrays(df, "f", "onehot", [(None, 1)], [(None, 3)])
    np.testing.assert_array_equal(y, [[0, 1, 0], [1, 0, 0]])
    _, y = _arrays(df, "f", "indexed", [(None, 1)], [(None, 3)])  # StringIndexer doubles
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, [2, 0])
    _, y = _arrays(df, "f", ["price", "indexed"], [(None, 1)], [(None, 2)])  # stacked
    np.testing.assert_array_equal(y, [[0.5, 2.0], [-1.5, 0.0]])
    _, y = _arrays(df, "f", ["flag", "onehot_vec"], [(None, 1)], [(None, 1), (None, 2)])
    assert y[0].dtype == np.int32 and y[1].dtype == np.float32
    np.testing.assert_array_equal(y[0], [1, 0])
    np.testing.assert_array_equal(y[1], [[1, 0], [0, 1]])


@pytest.mark.spark
@pytest.mark.parametrize(
    ("rows", "ddl", "fragments"),
    [
        ([([1.0, 2.0],), (None,)], "x array<double>", ["'x'", "1 null row(s)", "na.drop"]),
        ([([1.0, None],)], "x array<double>", ["'x'", "1 null value(s) inside", "coalesce"]),
        ([(1.0,), (None,)], "x double", ["'x'", "1 null row(s)", "Received: column='x'"]),
    ],
)
def test_nulls_are_refused_by_name(spark, rows, ddl, fragments):
    df = spark.createDataFrame(rows, ddl)
    with pytest.raises(DataContentError) as info:
        _arrays(df, "x", None, [(None, 1 if ddl.endswith("double") else 2)])
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.spark
def test_null_vectors_are_refused_by_name(spark):
    df = spark.createDataFrame(
        [(Vectors.dense([1.0]),), (None,)], T.StructType([T.StructField("v", VectorUDT())])
    )
    with pytest.raises(DataContentError, match="'v' has 1 null row"):
        _arrays(df, "v", None, [(None, 1)])


@pytest.mark.spark
def test_ragged_arrays_are_refused_by_name(spark):
    df = spark.createDataFrame([([1.0, 2.0],), ([1.0, 2.0, 3.0],), ([1.0],)], "x array<double>")
    with pytest.raises(DataContentError) as info:
        _arrays(df.coalesce(1), "x", None, [(None, 2)])
    message = str(info.value)
    assert "'x'" in message and "different lengths" in message
    assert "rows [1, 2] have [3, 1]" in message and "model input 0" in message


@pytest.mark.spark
def test_array_width_found_on_data_must_match_the_model(spark):
    df = spark.createDataFrame([([1.0, 2.0, 3.0], 4.0)], "x array<double>, s double")
    with pytest.raises(DataContentError) as info:
        _arrays(df, ["x", "s"], None, [(None, 8, 8, 1)])
    message = str(info.value)
    for fragment in ["['x', 's']", "give 4 values", "widths [3, 1]", "(None, 8, 8, 1)", "takes 64"]:
        assert fragment in message


@pytest.mark.spark
def test_zero_rows_give_empty_arrays_of_the_right_shape(spark):
    df = spark.createDataFrame([([1.0] * 64, 1.0, 2)], "x array<double>, s double, label int")
    spec = _spec(df.schema, [["x"], ["s"]], "label", [(None, 8, 8, 1), (None, 1)], [(None, 3)])
    for batches in ([], df.limit(0).select(*projection(spec)).toArrow()):
        x, y = batches_to_arrays(batches, spec)
        assert [part.shape for part in x] == [(0, 8, 8, 1), (0, 1)]
        assert x[0].dtype == np.float32 and y.shape == (0,) and y.dtype == np.int32


def test_sliced_and_chunked_batches_with_extra_columns():
    spec = _spec(
        T.StructType([T.StructField("x", T.ArrayType(T.FloatType()))]), "x", None, [(None, 2)]
    )
    rows = pa.array([[9, 9], [1, 2], [3, 4], [5, 6]], pa.list_(pa.float32()))
    table = pa.table({"keep": list("zabc"), spec.inputs[0].columns[0]: rows}).slice(1)
    for batches in (table, table.to_batches(max_chunksize=1)):  # one sliced chunk, three chunks
        x, y = batches_to_arrays(batches, spec)
        np.testing.assert_array_equal(x, [[1, 2], [3, 4], [5, 6]])
        assert y is None


def test_missing_projected_columns_name_the_fix():
    spec = _spec(T.StructType([T.StructField("x", T.DoubleType())]), "x", None, [(None, 1)])
    with pytest.raises(ValueError, match="projection\\(spec\\)"):
        batches_to_arrays(pa.table({"x": [1.0]}), spec)


def test_predictions_round_trip():
    schema = T.StructType([T.StructField("x", T.DoubleType())])
    spec = _spec(schema, "x", None, [(None, 1)], [(None, 1), (None, 2, 3), (None,)])
    age = np.array([[0.5], [1.5]], np.float32)
    grid = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    score = np.array([7.0, 8.0], np.float32)
    columns = predictions_to_arrow([age, grid, score], spec)
    fields = prediction_fields([(None, 1), (None, 2, 3), (None,)], "p", ["age", "grid", "score"])
    assert [c.type for c in columns] == [pa.float64(), pa.list_(pa.float32()), pa.float64()]
    assert [f.dataType for f in fields] == [
        T.DoubleType(),
        T.ArrayType(T.FloatType()),
        T.DoubleType(),
    ]
    np.testing.assert_array_equal(columns[0].to_numpy(), [0.5, 1.5])
    np.testing.assert_array_equal(columns[1].flatten().to_numpy().reshape(2, 2, 3), grid)
    np.testing.assert_array_equal(columns[2].to_numpy(), [7.0, 8.0])
    (single,) = predictions_to_arrow(
        np.zeros((0, 4)), _spec(schema, "x", None, [(None, 1)], [(None, 4)])
    )
    assert len(single) == 0 and single.type == pa.list_(pa.float32())
    with pytest.raises(ValueError, match="3 model output.*1 prediction array"):
        predictions_to_arrow(age, spec)


@pytest.mark.spark
def test_predictions_append_to_batches_in_map_in_arrow(spark):
    df = spark.createDataFrame([([1.0, 2.0], "a"), ([3.0, 4.0], "b")], "x array<double>, id string")
    spec = _spec(df.schema, "x", None, [(None, 2)], [(None, 1), (None, 2)])
    fields = prediction_fields([(None, 1), (None, 2)], "p", ["sum", "double"])
    output = T.StructType([*df.schema.fields, *fields])
    keep = df.columns

    def predict(batches):
        for batch in batches:
            x, _ = batches_to_arrays([batch], spec)
            predictions = [x.sum(axis=1, keepdims=True), x * 2]
            columns = [batch.column(name) for name in keep]
            columns += predictions_to_arrow(predictions, spec)
            yield pa.RecordBatch.from_arrays(columns, names=output.names)

    rows = df.select("*", *projection(spec)).mapInArrow(predict, output).orderBy("id").collect()
    assert [(r.id, r.x, r.p_sum, r.p_double) for r in rows] == [
        ("a", [1.0, 2.0], 3.0, [2.0, 4.0]),
        ("b", [3.0, 4.0], 7.0, [6.0, 8.0]),
    ]
