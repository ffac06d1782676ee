"""Driver-side checks of a DataFrame schema against a model's inputs and outputs.

Driver module. Everything here reads a `StructType` only, so no Spark job runs:
errors surface before the fit starts. The `DataSpec` it builds travels to the
executors, where `sparkeras.data.convert` reads the projected columns.
"""

import difflib
import math

import numpy as np
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkeras.data.decode import check_decode, function_name, ship
from sparkeras.data.errors import DataSchemaError
from sparkeras.data.spec import DataSpec, FieldSpec, is_scalar_row

__all__ = ["prediction_fields", "projection", "resolve_data_spec"]

_PREFIX = "__sparkeras_"
_VECTOR_UDTS = ("org.apache.spark.ml.linalg.VectorUDT", "org.apache.spark.mllib.linalg.VectorUDT")
_NUMERIC = (T.NumericType, T.BooleanType)
_INTEGRAL = (T.IntegralType, T.BooleanType)
_IMAGE_FIELDS = ("height", "width", "nChannels", "data")
_TEXT = (T.BinaryType, T.StringType)


def resolve_data_spec(
    schema, features_col, label_col, input_shapes, output_shapes, input_dtypes=None,
    decode=None, backend=None,
):
    """Checks the columns against the model and describes how to feed it.

    Reads the schema only, so no Spark job runs. A `features_col` entry is a
    column name or a list of names whose values are concatenated per row: a
    `pyspark.ml.linalg` vector column, an `array<numeric>` column or a numeric
    column. A list of names is one model input, except when the model has k > 1
    inputs and the list has k names: then each name is one input. A list with
    nested lists gives one group per input. `label_col` follows the same rules
    against the model's outputs.

    Besides numbers, a feature column may be: a `binary` (or `string`)
    column with a `decode` function, run on the executors, that turns a list
    of its values into a numpy array with one row per value; a struct of
    Spark's image data source (`spark.read.format("image")`) for an input of
    shape `(H, W, C)`, decoded to uint8 with BGR(A) turned into RGB(A); a
    `string` column for a model input of dtype "string" (TensorFlow backend).

    Label kinds: an integer (or boolean) column holds class indices, and so
    does a floating column (e.g. `StringIndexer` output) when the output has
    more than one unit; both become int32 of shape `(n,)`. Any other label
    (a float target, a one-hot or multi-target array/vector, several stacked
    columns) becomes float32 shaped like the model's output.

    Widths are checked here when the schema shows them (numeric columns;
    vectors carrying `ml_attr` metadata, as `VectorAssembler` writes it);
    arrays and other vectors are checked on the executors.

    Args:
        schema: The DataFrame's `pyspark.sql.types.StructType`.
        features_col: Column name, list of names, or list of column groups.
        label_col: Column name, list of names, or None when there are no labels.
        input_shapes: `model.inputs[i].shape` for each input, batch dim first.
        output_shapes: `model.outputs[i].shape` for each output, batch dim first.
        input_dtypes: dtype name of each model input; "float32" if None.
        decode: None, a function for every binary or string feature column, or
            `{column: function}`; see `sparkeras.data.decode`.
        backend: The Keras backend; `keras.backend.backend()` if None.

    Returns:
        A `DataSpec` for `projection` on the driver and `batches_to_arrays` on
        the executors.

    Raises:
        DataSchemaError: An unknown or non-numeric column, a wrong number of
            column groups, a width that does not match the model, a model
            shape that is not fixed, a bad `decode`, or a string input under
            a backend other than TensorFlow.

    Example:
    >>> spec = resolve_data_spec(df.schema, ["x1", "x2", "x3", "x4"], "label",
    ...                          [(None, 4)], [(None, 3)])
    >>> spec.inputs[0].shape, spec.targets[0].dtype
    ((4,), 'int32')
    """
    if not isinstance(schema, T.StructType):
        raise TypeError(
            "resolve_data_spec takes the DataFrame's schema (`df.schema`), a StructType. "
            f"Received: schema of type {type(schema).__name__}"
        )
    input_rows = _fixed_row_shapes(input_shapes, "input")
    dtypes = _input_dtypes(input_dtypes, len(input_rows))
    feature_groups = _column_groups(features_col, "features_col", len(input_rows), "input")
    decoders = _decoders(schema, check_decode(decode), feature_groups, features_col)
    inputs = tuple(
        _input_field(schema, feature_groups[i], i, input_rows[i], dtypes[i], features_col,
                     decoders)
        for i in range(len(input_rows))
    )
    _check_string_backend(inputs, backend, features_col)
    targets = ()
    if label_col is not None:
        output_rows = _fixed_row_shapes(output_shapes, "output")
        label_groups = _column_groups(label_col, "label_col", len(output_rows), "output")
        targets = tuple(
            _target_field(schema, label_groups[i], i, output_rows[i], label_col)
            for i in range(len(output_rows))
        )
    prediction_shapes = tuple(tuple(shape[1:]) for shape in output_shapes)
    return DataSpec(inputs=inputs, targets=targets, prediction_shapes=prediction_shapes)


def projection(spec):
    """Column expressions that turn the user's columns into Arrow-friendly ones.

    Every conversion runs in the JVM plan: vectors become arrays through
    `vector_to_array`, arrays and numbers are cast to the element type of the
    model's dtype (float, double, int or long). The outputs are named
    `__sparkeras_x{input}_{column}` and `__sparkeras_y{output}_{column}`, the
    names in `spec.columns`.

    Args:
        spec: A `DataSpec` from `resolve_data_spec`.

    Returns:
        A list of `pyspark.sql.Column`, inputs first then targets.

    Example:
    >>> df.select(*projection(spec)).mapInArrow(train_task, schema)        # fit
    >>> df.select("*", *projection(spec)).mapInArrow(predict_task, schema)  # predict
    """
    from pyspark.ml.functions import vector_to_array

    columns = []
    for field in (*spec.inputs, *spec.targets):
        for name, source, kind in zip(
            field.columns, field.source_columns, field.kinds, strict=True
        ):
            column = F.col(_quoted(source))
            if kind in ("decoded", "string"):
                columns.append(column.alias(name))
                continue
            if kind == "image":
                parts = [column.getField(part).alias(part) for part in _IMAGE_FIELDS]
                columns.append(F.when(column.isNotNull(), F.struct(*parts)).alias(name))
                continue
            element = _spark_element_type(field.dtype)
            if kind == "vector":
                precision = "float64" if isinstance(element, T.DoubleType) else "float32"
                # vector_to_array fails the task on a null vector; keep it null so the
                # executor reports the column by name.
                column = F.when(column.isNotNull(), vector_to_array(column, precision))
            target_type = element if kind == "scalar" else T.ArrayType(element)
            columns.append(column.cast(target_type).alias(name))
    return columns


def prediction_fields(output_shapes, output_col="prediction", output_names=None):
    """The Spark fields of the prediction columns, one per model output.

    An output whose per-row shape is `()` or `(1,)` becomes a DoubleType
    column; any other output becomes an `array<float>` column holding each
    row's prediction flattened in C order (reshape it with the model's output
    shape to restore the dimensions).

    Args:
        output_shapes: `model.outputs[i].shape` for each output, batch dim first.
        output_col: Column name for a single output, or the prefix of
            `f"{output_col}_{name}"` for several; or a list of column names,
            one per output.
        output_names: Suffixes for several outputs, e.g. `model.output_names`;
            the output indices if None.

    Returns:
        A list of `pyspark.sql.types.StructField`, in the model's output order.

    Example:
    >>> prediction_fields([(None, 10)], "prediction")
    [StructField('prediction', ArrayType(FloatType(), True), True)]
    >>> [f.name for f in prediction_fields([(None, 1), (None, 3)], "p", ["age", "kind"])]
    ['p_age', 'p_kind']
    """
    if not isinstance(output_col, str):
        names = list(output_col)
    elif len(output_shapes) == 1:
        names = [output_col]
    else:
        suffixes = range(len(output_shapes)) if output_names is None else output_names
        names = [f"{output_col}_{suffix}" for suffix in suffixes]
    if len(names) != len(output_shapes):
        raise DataSchemaError(
            f"The model has {len(output_shapes)} output(s) but {len(names)} prediction "
            f"column name(s) were given: {names}. Pass one name per output, or a single "
            f"output_col prefix. Received: output_col={output_col!r}, output_names={output_names!r}"
        )
    return [
        T.StructField(
            name, T.DoubleType() if is_scalar_row(shape[1:]) else T.ArrayType(T.FloatType())
        )
        for name, shape in zip(names, output_shapes, strict=True)
    ]


def _fixed_row_shapes(shapes, noun):
    """Per-row shapes (batch dim dropped); every dimension must be known."""
    rows = [tuple(shape[1:]) for shape in shapes]
    for index, row in enumerate(rows):
        if None in row:
            raise DataSchemaError(
                f"Model {noun} {index} has shape {tuple(shapes[index])} with an unknown "
                "dimension besides the batch one. sparkeras feeds fixed-size rows, so build "
                f"the model with a fixed {noun} shape, e.g. keras.Input(shape=(784,)). "
                f"Received: {noun}_shapes={[tuple(shape) for shape in shapes]}"
            )
    return rows


def _input_dtypes(input_dtypes, count):
    """numpy dtype names of the model inputs, float32 by default; "object" for strings."""
    dtypes = ["float32"] * count if input_dtypes is None else list(input_dtypes)
    if len(dtypes) != count:
        raise ValueError(
            f"input_dtypes needs one dtype per model input ({count}). "
            f"Received: input_dtypes={input_dtypes!r}"
        )
    names = []
    for dtype in dtypes:
        if dtype == "string":
            names.append("object")
            continue
        try:
            numpy_dtype = np.dtype(dtype)
        except TypeError:
            numpy_dtype = None
        if numpy_dtype is None or numpy_dtype.kind not in "biuf":
            raise DataSchemaError(
                "sparkeras feeds model inputs as numeric numpy arrays, or text for an input "
                "of dtype 'string'; give each input a numeric dtype such as 'float32' or "
                "'int32', or 'string'. "
                f"Received: input_dtypes={input_dtypes!r}"
            )
        names.append(numpy_dtype.name)
    return names


def _column_groups(value, argument, count, noun):
    """Splits `features_col` or `label_col` into one tuple of names per model input/output."""
    if isinstance(value, str):
        groups = [(value,)]
    elif isinstance(value, (list, tuple)) and value:
        if any(isinstance(item, (list, tuple)) for item in value):
            groups = [tuple(item) if isinstance(item, (list, tuple)) else (item,) for item in value]
        elif count > 1 and len(value) == count:
            groups = [(item,) for item in value]
        else:
            groups = [tuple(value)]
    else:
        groups = [()]
    if not all(group and all(isinstance(name, str) for name in group) for group in groups):
        raise DataSchemaError(
            f"{argument} must be a column name, a non-empty list of column names, or a list "
            f"of column groups (names or lists of names). Received: {argument}={value!r}"
        )
    if len(groups) != count:
        raise DataSchemaError(
            f"{argument} gives {len(groups)} column group(s) but the model has {count} "
            f"{noun}(s). Pass one column, or one list of columns, per {noun}: e.g. "
            f"{argument}=[['a', 'b'], 'c'] for a model with 2 {noun}s. "
            f"Received: {argument}={value!r}"
        )
    return groups


def _inspect(schema, name, argument, value):
    """Returns (kind, width, Spark type) of one column, or raises DataSchemaError."""
    if name not in schema.names:
        close = difflib.get_close_matches(name, schema.names, n=3)
        hint = f"Did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise DataSchemaError(
            f"Column {name!r} given in {argument} is not in the DataFrame. {hint}"
            f"Available columns: {schema.names}. Received: {argument}={value!r}"
        )
    field = schema[name]
    dtype = field.dataType
    if isinstance(dtype, T.UserDefinedType) and dtype.scalaUDT() in _VECTOR_UDTS:
        return "vector", field.metadata.get("ml_attr", {}).get("num_attrs"), dtype
    if isinstance(dtype, T.ArrayType) and isinstance(dtype.elementType, _NUMERIC):
        return "array", None, dtype
    if isinstance(dtype, _NUMERIC):
        return "scalar", 1, dtype
    raise DataSchemaError(
        f"Column {name!r} given in {argument} has type {dtype.simpleString()}, which a model "
        f"cannot take. {_type_advice(name, dtype, argument)} Received: {argument}={value!r}"
    )


def _type_advice(name, dtype, argument):
    """How to turn a column of an unsupported type into numbers."""
    if isinstance(dtype, T.StringType) and argument == "label_col":
        return (
            f"Index string labels first, e.g. StringIndexer(inputCol={name!r}, "
            f"outputCol='{name}_index'), and pass label_col='{name}_index'."
        )
    if isinstance(dtype, T.StringType):
        return (
            f"Cast numbers stored as text, e.g. F.col({name!r}).cast('double'), or encode "
            "categories with StringIndexer and OneHotEncoder, then VectorAssembler; for "
            "text, give the model an input of dtype 'string' (TensorFlow backend) or pass "
            f"decode={{{name!r}: function}} that turns a list of its values into numbers."
        )
    if isinstance(dtype, T.BinaryType):
        return (
            "A binary column (e.g. encoded images from spark.read.format('binaryFile')) "
            f"needs decode={{{name!r}: function}}: a function, run on the executors, that "
            "turns a list of its bytes values into a numpy array with one row per value."
        )
    if isinstance(dtype, T.ArrayType) and isinstance(dtype.elementType, T.ArrayType):
        return (
            f"Nested arrays are not supported: flatten them, e.g. F.flatten({name!r}), and "
            "let the model's input shape restore the dimensions."
        )
    if isinstance(dtype, T.StructType):
        return (
            "Structs other than ML vectors are not supported: select their numeric fields "
            "as top-level columns, or assemble them with VectorAssembler."
        )
    return (
        "Only numeric columns, array<numeric> columns and pyspark.ml vector columns can "
        "feed a model: convert this column to numbers first."
    )


def _internal_names(prefix, index, group):
    return tuple(f"{_PREFIX}{prefix}{index}_{position}" for position in range(len(group)))


def _input_field(schema, group, index, shape, dtype, value, decoders):
    """The `FieldSpec` of model input `index`, width-checked when the schema shows it."""
    role = f"model input {index}"
    kinds, widths = zip(
        *(_feature_kind(schema, name, value, dtype, role, decoders) for name in group),
        strict=True,
    )
    if "image" in kinds and (len(group) > 1 or len(shape) != 3):
        raise DataSchemaError(
            f"Image column(s) {[n for n, k in zip(group, kinds, strict=True) if k == 'image']} "
            f"feed {role}, of shape {(None, *shape)}; an image column must be the only column "
            "of a model input of shape (None, height, width, channels), e.g. "
            f"keras.Input(shape=(224, 224, 3)). Received: features_col={value!r}"
        )
    field = FieldSpec(
        columns=_internal_names("x", index, group),
        source_columns=group,
        kinds=kinds,
        widths=widths,
        shape=shape,
        dtype=dtype,
        role=role,
        decoders=(
            tuple(decoders.get(name) for name in group)
            if any(name in decoders for name in group) else None
        ),
    )
    _check_width(field, "features_col", value)
    return field


def _is_image(dtype):
    """Whether a Spark type is the struct of Spark's image data source."""
    return isinstance(dtype, T.StructType) and set(_IMAGE_FIELDS) <= set(dtype.names) and (
        isinstance(dtype["data"].dataType, T.BinaryType)
    )


def _feature_kind(schema, name, value, dtype, role, decoders):
    """(kind, width) of one features_col column feeding an input of numpy `dtype`."""
    column_type = schema[name].dataType if name in schema.names else None
    if name in decoders:
        return "decoded", None
    if dtype == "object":
        if not isinstance(column_type, T.StringType):
            _inspect(schema, name, "features_col", value)  # an unknown column is named first
            raise DataSchemaError(
                f"Column {name!r} has type {column_type.simpleString()}, but {role} has dtype "
                "'string': it takes text. Pass a string column, or give the model a numeric "
                f"input for this column. Received: features_col={value!r}"
            )
        return "string", 1
    if _is_image(column_type):
        return "image", None
    kind, width, _ = _inspect(schema, name, "features_col", value)
    return kind, width


def _decoders(schema, decode, groups, value):
    """`{column: ShippedFunction}` for the feature columns that `decode` covers."""
    if decode is None:
        return {}
    names = [name for group in groups for name in group]
    if isinstance(decode, dict):
        unknown = [name for name in decode if name not in names]
        if unknown:
            raise DataSchemaError(
                f"decode names column(s) {unknown} that are not in features_col {names}. "
                "Key decode by the feature columns it decodes. "
                f"Received: decode keys={list(decode)}"
            )
        chosen = dict(decode)
    else:
        chosen = {
            name: decode
            for name in names
            if name in schema.names and isinstance(schema[name].dataType, _TEXT)
        }
        if not chosen:
            raise DataSchemaError(
                f"decode={function_name(decode)!r} was given, but no column of features_col is "
                "binary or string, the columns a decode function reads. Drop decode, or pass "
                f"the binary column. Received: features_col={value!r}"
            )
    for name in chosen:
        _inspect_known(schema, name, value)
        column_type = schema[name].dataType
        if not isinstance(column_type, _TEXT):
            raise DataSchemaError(
                f"decode={{{name!r}: {function_name(chosen[name])}}} reads a binary or string "
                f"column, but {name!r} has type {column_type.simpleString()}, which sparkeras "
                f"converts itself. Drop it from decode. Received: decode keys={list(chosen)}"
            )
    return {name: ship(function) for name, function in chosen.items()}


def _inspect_known(schema, name, value):
    """Raises the unknown-column error of `_inspect` when `name` is not in the schema."""
    if name not in schema.names:
        _inspect(schema, name, "features_col", value)


def _check_string_backend(inputs, backend, value):
    """Refuses a string model input under a backend that cannot feed text to a model."""
    text = [field for field in inputs if field.dtype == "object"]
    if not text:
        return
    if backend is None:
        import keras

        backend = keras.backend.backend()
    if backend != "tensorflow":
        field = text[0]
        raise DataSchemaError(
            f"{field.role.capitalize()} has dtype 'string', fed by column(s) "
            f"{list(field.source_columns)}, but only the TensorFlow backend can feed text "
            f"into a model (TextVectorization and StringLookup run in TensorFlow). Under "
            f"{backend}, turn the text into numbers on the executors with decode="
            f"{{{field.source_columns[0]!r}: function}} (e.g. a tokenizer returning int32 "
            "ids) and give the model a numeric input, or set KERAS_BACKEND=tensorflow. "
            f"Received: backend={backend!r}, features_col={value!r}"
        )


def _target_field(schema, group, index, shape, value):
    """The `FieldSpec` of the labels of model output `index`: class indices or float targets."""
    kinds, widths, types = zip(
        *(_inspect(schema, name, "label_col", value) for name in group), strict=True
    )
    size = math.prod(shape)
    is_class_index = (
        len(group) == 1 and kinds[0] == "scalar" and (isinstance(types[0], _INTEGRAL) or size > 1)
    )
    if is_class_index and len(shape) > 1:
        raise DataSchemaError(
            f"Column {group[0]!r} in label_col holds one class index per row, but model output "
            f"{index} has shape {(None, *shape)}. Class indices need an output of shape "
            "(None, units): units >= 2 for several classes or 1 for binary. Pass a label column "
            f"with {size} values per row (an array or vector), or change the model's output. "
            f"Received: label_col={value!r}"
        )
    field = FieldSpec(
        columns=_internal_names("y", index, group),
        source_columns=group,
        kinds=kinds,
        widths=widths,
        shape=() if is_class_index else shape,
        dtype="int32" if is_class_index else "float32",
        role=f"model output {index}",
    )
    _check_width(field, "label_col", value)
    return field


def _check_width(field, argument, value):
    """Raises DataSchemaError when the schema shows a width other than the model's."""
    if None in field.widths or sum(field.widths) == field.size:
        return
    raise DataSchemaError(
        f"Columns {list(field.source_columns)} in {argument} give {sum(field.widths)} values "
        f"per row (widths {list(field.widths)}), but {field.role} has shape "
        f"{(None, *field.shape)}, which takes {field.size}. Pass columns whose widths add up "
        f"to {field.size}, or change the model's shape. Received: {argument}={value!r}"
    )


def _spark_element_type(dtype):
    """The Spark type whose Arrow form converts to numpy `dtype` without loss."""
    numpy_dtype = np.dtype(dtype)
    if numpy_dtype.kind == "f":
        return T.DoubleType() if numpy_dtype.itemsize == 8 else T.FloatType()
    return T.LongType() if numpy_dtype.itemsize == 8 else T.IntegerType()


def _quoted(name):
    """A column reference that takes `name` literally, dots and backticks included."""
    return "`" + name.replace("`", "``") + "`"
