"""Driver-side data checks: resolve_data_spec, projection, prediction_fields."""

import pickle

import pytest
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import types as T

from sparkeras.data import (
    DataSchemaError,
    DataSpec,
    prediction_fields,
    projection,
    resolve_data_spec,
)


def _assembled(name, width):
    """A vector field carrying the ML attribute metadata VectorAssembler writes."""
    return T.StructField(name, VectorUDT(), metadata={"ml_attr": {"num_attrs": width}})


SCHEMA = T.StructType(
    [
        T.StructField("features", VectorUDT()),
        _assembled("assembled", 4),
        _assembled("onehot_vec", 3),
        T.StructField("pixels", T.ArrayType(T.DoubleType())),
        T.StructField("onehot", T.ArrayType(T.FloatType())),
        T.StructField("a", T.DoubleType()),
        T.StructField("b", T.IntegerType()),
        T.StructField("c", T.FloatType()),
        T.StructField("d", T.DecimalType(10, 2)),
        T.StructField("label", T.LongType()),
        T.StructField("flag", T.BooleanType()),
        T.StructField("target", T.DoubleType()),
        T.StructField("name", T.StringType()),
        T.StructField("day", T.DateType()),
        T.StructField("tags", T.MapType(T.StringType(), T.DoubleType())),
        T.StructField("point", T.StructType([T.StructField("x", T.DoubleType())])),
        T.StructField("matrix", T.ArrayType(T.ArrayType(T.DoubleType()))),
        T.StructField("words", T.ArrayType(T.StringType())),
    ]
)


def _resolve(features_col, label_col, input_shapes, output_shapes=((None, 3),), **kwargs):
    return resolve_data_spec(SCHEMA, features_col, label_col, input_shapes, output_shapes, **kwargs)


def test_single_vector_input_with_class_labels():
    spec = _resolve("features", "label", [(None, 5)])
    (field,) = spec.inputs
    assert field.source_columns == ("features",)
    assert field.columns == ("__sparkeras_x0_0",)
    assert field.kinds == ("vector",) and field.widths == (None,)
    assert field.shape == (5,) and field.dtype == "float32"
    (target,) = spec.targets
    assert (target.source_columns, target.shape, target.dtype) == (("label",), (), "int32")
    assert spec.columns == ("__sparkeras_x0_0", "__sparkeras_y0_0")
    assert spec.prediction_shapes == ((3,),)


def test_list_of_scalar_columns_is_one_input_of_their_count():
    spec = _resolve(["a", "b", "c", "d"], "label", [(None, 4)])
    (field,) = spec.inputs
    assert field.kinds == ("scalar",) * 4 and field.widths == (1, 1, 1, 1)
    assert field.columns == tuple(f"__sparkeras_x0_{i}" for i in range(4))


def test_widths_of_scalars_and_assembled_vectors_add_up():
    (field,) = _resolve(["assembled", "a", "b"], None, [(None, 6)]).inputs
    assert field.widths == (4, 1, 1)


def test_image_input_keeps_its_per_row_shape():
    (field,) = _resolve("pixels", None, [(None, 8, 8, 1)]).inputs
    assert field.shape == (8, 8, 1) and field.size == 64


def test_flat_list_with_one_name_per_input_gives_one_input_each():
    spec = _resolve(["features", "pixels"], None, [(None, 3), (None, 8, 8, 1)])
    assert [f.source_columns for f in spec.inputs] == [("features",), ("pixels",)]
    assert [f.columns for f in spec.inputs] == [("__sparkeras_x0_0",), ("__sparkeras_x1_0",)]


def test_nested_groups_give_one_input_per_group():
    spec = _resolve([["a", "b"], "pixels", ["assembled"]], None, [(None, 2), (None, 64), (None, 4)])
    assert [f.source_columns for f in spec.inputs] == [("a", "b"), ("pixels",), ("assembled",)]
    assert spec.targets == ()


def test_input_dtypes_are_kept():
    spec = _resolve(
        ["b", "pixels"], None, [(None, 1), (None, 5)], input_dtypes=["int32", "float64"]
    )
    assert [f.dtype for f in spec.inputs] == ["int32", "float64"]


@pytest.mark.parametrize(
    ("label_col", "output_shapes", "shapes", "dtypes"),
    [
        ("label", [(None, 1)], [()], ["int32"]),  # binary
        ("flag", [(None, 1)], [()], ["int32"]),
        ("target", [(None, 1)], [(1,)], ["float32"]),  # regression
        ("target", [(None,)], [()], ["float32"]),
        ("target", [(None, 3)], [()], ["int32"]),  # StringIndexer-style double index
        ("onehot", [(None, 3)], [(3,)], ["float32"]),
        ("onehot_vec", [(None, 3)], [(3,)], ["float32"]),
        (["a", "c"], [(None, 2)], [(2,)], ["float32"]),  # stacked multi-target
        (["label", "target"], [(None, 3), (None, 1)], [(), (1,)], ["int32", "float32"]),
        ([["a", "c"], "onehot"], [(None, 2), (None, 5)], [(2,), (5,)], ["float32"] * 2),
    ],
)
def test_label_kinds(label_col, output_shapes, shapes, dtypes):
    spec = _resolve("features", label_col, [(None, 3)], output_shapes)
    assert [t.shape for t in spec.targets] == shapes
    assert [t.dtype for t in spec.targets] == dtypes
    assert [t.role for t in spec.targets] == [f"model output {i}" for i in range(len(shapes))]


def test_unknown_output_dimension_is_fine_without_labels():
    spec = _resolve("features", None, [(None, 3)], [(None, None, 4)])
    assert spec.prediction_shapes == ((None, 4),)


def test_spec_is_plain_picklable_data():
    spec = _resolve(
        [["a", "b"], "pixels"], ["label", "onehot"], [(None, 2), (None, 64)], [(None, 3), (None, 7)]
    )
    assert isinstance(spec, DataSpec)
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert len(pickle.dumps(spec)) < 2000


def _error(case_id, features_col, label_col, fragments, inputs=((None, 3),), outputs=((None, 3),)):
    """One bad call of `resolve_data_spec` and the fragments its message must hold."""
    return pytest.param(features_col, label_col, list(inputs), list(outputs), fragments, id=case_id)


# fmt: off
SCHEMA_ERRORS = [
    _error("unknown-feature", "featurs", "label",
           ["'featurs'", "Did you mean 'features'", "Available columns",
            "Received: features_col='featurs'"]),
    _error("unknown-label", "features", "lable",
           ["'lable'", "Did you mean 'label'", "Received: label_col='lable'"]),
    _error("unknown-in-list", ["a", "zzz"], None,
           ["'zzz'", "Available columns", "Received: features_col=['a', 'zzz']"], [(None, 2)]),
    _error("string-feature", "name", None,
           ["'name'", "type string", "cast('double')", "VectorAssembler",
            "Received: features_col='name'"]),
    _error("string-label", "features", "name",
           ["'name'", "type string", "StringIndexer", "Received: label_col='name'"]),
    _error("date", "day", None, ["'day'", "type date"]),
    _error("map", "tags", None, ["'tags'", "type map<string,double>"]),
    _error("struct", "point", None, ["'point'", "type struct<x:double>", "Structs"]),
    _error("nested-array", "matrix", None, ["'matrix'", "array<array<double>>", "F.flatten"]),
    _error("array-of-strings", "words", None, ["'words'", "array<string>"]),
    _error("too-few-feature-groups", "features", None,
           ["1 column group(s)", "2 input(s)", "Received: features_col='features'"],
           [(None, 3), (None, 2)]),
    _error("flat-list-not-one-per-input", ["a", "b", "c"], None,
           ["1 column group(s)", "2 input(s)"], [(None, 2), (None, 1)]),
    _error("flat-label-list-not-one-per-output", "features", ["label", "target", "a"],
           ["label_col gives 1 column group(s)", "2 output(s)"], outputs=[(None, 3), (None, 1)]),
    _error("too-many-label-groups", "features", [["label"], ["target"], ["a"]],
           ["label_col gives 3 column group(s)", "2 output(s)"], outputs=[(None, 3), (None, 1)]),
    _error("scalar-count-width", ["a", "b", "c"], None,
           ["['a', 'b', 'c']", "give 3 values", "model input 0", "(None, 4)", "takes 4"],
           [(None, 4)]),
    _error("assembled-vector-width", "assembled", None,
           ["['assembled']", "give 4 values", "(None, 5)", "takes 5"], [(None, 5)]),
    _error("group-width", [["a"], ["assembled", "b"]], None,
           ["['assembled', 'b']", "give 5 values", "model input 1", "(None, 2, 2)"],
           [(None, 1), (None, 2, 2)]),
    _error("one-hot-width", "features", "onehot_vec",
           ["['onehot_vec']", "give 3 values", "model output 0", "(None, 4)", "label_col"],
           outputs=[(None, 4)]),
    _error("stacked-target-width", "features", ["a", "b", "c"],
           ["['a', 'b', 'c']", "give 3 values", "takes 2"], outputs=[(None, 2)]),
    _error("class-index-for-image-output", "features", "label",
           ["'label'", "class index", "(None, 8, 8, 1)", "(None, units)"],
           outputs=[(None, 8, 8, 1)]),
    _error("unknown-input-dimension", "features", None,
           ["input 0", "(None, None)", "fixed input shape"], [(None, None)]),
    _error("unknown-output-dimension-with-labels", "features", "label",
           ["output 0", "(None, None, 3)", "fixed output shape"], outputs=[(None, None, 3)]),
    _error("not-a-name", 5, None, ["features_col must be", "Received: features_col=5"]),
    _error("empty-list", [], None, ["features_col must be"]),
    _error("empty-group", [["a"], []], None, ["features_col must be"], [(None, 1)] * 2),
    _error("name-not-a-string", ["a", 3], None, ["features_col must be"]),
]
# fmt: on


@pytest.mark.parametrize(
    ("features_col", "label_col", "input_shapes", "output_shapes", "fragments"), SCHEMA_ERRORS
)
def test_schema_errors(features_col, label_col, input_shapes, output_shapes, fragments):
    with pytest.raises(DataSchemaError) as info:
        _resolve(features_col, label_col, input_shapes, output_shapes)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message


def test_non_numeric_input_dtype_is_refused():
    with pytest.raises(
        DataSchemaError, match="numeric dtype.*Received: input_dtypes=\\['complex64'\\]"
    ):
        _resolve("features", None, [(None, 3)], input_dtypes=["complex64"])


def test_a_dataframe_instead_of_its_schema_is_refused():
    with pytest.raises(TypeError, match="df.schema"):
        resolve_data_spec(object(), "features", None, [(None, 3)], [(None, 1)])


@pytest.mark.parametrize(
    ("output_shapes", "output_col", "output_names", "expected"),
    [
        ([(None, 1)], "prediction", None, [("prediction", T.DoubleType())]),
        ([(None,)], "p", None, [("p", T.DoubleType())]),
        ([(None, 10)], "p", None, [("p", T.ArrayType(T.FloatType()))]),
        ([(None, 8, 8, 1)], "p", None, [("p", T.ArrayType(T.FloatType()))]),
        (
            [(None, 1), (None, 3)],
            "p",
            ["age", "kind"],
            [("p_age", T.DoubleType()), ("p_kind", T.ArrayType(T.FloatType()))],
        ),
        ([(None, 1), (None, 1)], "p", None, [("p_0", T.DoubleType()), ("p_1", T.DoubleType())]),
        (
            [(None, 1), (None, 2)],
            ["x", "y"],
            None,
            [("x", T.DoubleType()), ("y", T.ArrayType(T.FloatType()))],
        ),
    ],
)
def test_prediction_fields(output_shapes, output_col, output_names, expected):
    fields = prediction_fields(output_shapes, output_col, output_names)
    assert [(f.name, f.dataType) for f in fields] == expected


def test_prediction_fields_need_one_name_per_output():
    with pytest.raises(
        DataSchemaError, match="2 output.*1 prediction column.*Received: output_col"
    ):
        prediction_fields([(None, 1), (None, 2)], ["only_one"])


@pytest.mark.spark
def test_no_spark_job_runs_while_resolving(spark):
    from pyspark.ml.feature import VectorAssembler

    df = spark.createDataFrame([(1.0, 2.0, 3.0, 1)], ["x1", "x2", "x3", "label"])
    df = VectorAssembler(inputCols=["x1", "x2", "x3"], outputCol="features").transform(df)
    tracker = spark.sparkContext.statusTracker()
    before = set(tracker.getJobIdsForGroup(None))
    spec = resolve_data_spec(df.schema, "features", "label", [(None, 3)], [(None, 2)])
    projected = df.select(*projection(spec))
    with pytest.raises(DataSchemaError, match="give 3 values"):
        resolve_data_spec(df.schema, "features", "label", [(None, 4)], [(None, 2)])
    assert set(tracker.getJobIdsForGroup(None)) == before
    # The same probe does see a job: the check above can fail.
    projected.count()
    assert set(tracker.getJobIdsForGroup(None)) != before


@pytest.mark.spark
def test_projection_normalises_types_in_the_jvm_plan(spark):
    df = spark.createDataFrame([], SCHEMA)
    spec = _resolve(
        [["features", "a", "b"], "pixels", "d"],
        ["label", "onehot_vec", "target"],
        [(None, 5), (None, 4), (None, 1)],
        [(None, 3), (None, 3), (None, 1)],
        input_dtypes=["float32", "float64", "int64"],
    )
    projected = df.select(*projection(spec)).schema
    assert projected.names == list(spec.columns)
    float_array, double_array = T.ArrayType(T.FloatType()), T.ArrayType(T.DoubleType())
    assert [f.dataType for f in projected] == [
        float_array,
        T.FloatType(),
        T.FloatType(),  # input 0: vector, double, int
        double_array,  # input 1 in float64
        T.LongType(),  # input 2 in int64
        T.IntegerType(),
        float_array,
        T.FloatType(),  # class index, one-hot vector, target
    ]


@pytest.mark.spark
def test_column_names_with_dots_are_taken_literally(spark):
    df = spark.createDataFrame([(1.0, 2)], ["x.1", "y"])
    spec = resolve_data_spec(df.schema, ["x.1"], "y", [(None, 1)], [(None, 2)])
    assert df.select(*projection(spec)).schema.names == list(spec.columns)
