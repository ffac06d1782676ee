"""Images and text as input: binary columns with decode=, image structs, string columns.

Real Spark, small generated data: 16x16 PNGs (Pillow) in a binary column,
the same pictures read back by Spark's image data source, and short texts
for a model whose input has dtype string (TensorFlow backend).
"""

import io
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sparkeras.demo import coloured_pictures, png_bytes

pytestmark = pytest.mark.spark

ROWS = 240
SIDE = 16


def png_to_array(values):
    """The decode function under test: PNG bytes to (n, 16, 16, 3) uint8."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(v)).convert("RGB")) for v in values])


@pytest.fixture(scope="module")
def pictures():
    return coloured_pictures(ROWS, side=SIDE)


@pytest.fixture(scope="module")
def png_frame(spark, pictures):
    pixels, label = pictures
    frame = pd.DataFrame({"image": [png_bytes(p) for p in pixels], "label": label,
                          "id": np.arange(len(label))})
    return spark.createDataFrame(frame).repartition(3).cache()


@pytest.fixture(scope="module")
def image_frame(spark, pictures, tmp_path_factory):
    """The pictures as Spark's image data source reads them (BGR structs), with labels."""
    from pyspark.sql import functions as F

    folder = tmp_path_factory.mktemp("pictures")
    pixels, label = pictures
    for index, picture in enumerate(pixels):
        (folder / f"{index:04d}_{label[index]}.png").write_bytes(png_bytes(picture))
    frame = spark.read.format("image").load(str(folder))
    name = F.element_at(F.split(F.col("image.origin"), "/"), -1)
    return frame.select(
        "image",
        F.regexp_extract(name, r"^(\d+)_", 1).cast("int").alias("id"),
        F.regexp_extract(name, r"_(\d)\.png$", 1).cast("int").alias("label"),
    ).cache()


def _cnn(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((SIDE, SIDE, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _predicted_by_id(frame, column="prediction"):
    rows = frame.select("id", column).toPandas().sort_values("id")
    return np.stack(rows[column].to_numpy())


def _fit_evaluate_predict(frame, pixels, label, **kwargs):
    """Fits on the frame; evaluate and predict must match the Keras model run locally."""
    from sparkeras import SparkModel

    spark_model = SparkModel(_cnn(), num_workers=2)
    history = spark_model.fit(frame, "image", "label", epochs=3, batch_size=16, verbose=0,
                              **kwargs)
    assert np.isfinite(history.history["loss"]).all()
    local = spark_model.model.evaluate(pixels.astype("float32"), label, verbose=0,
                                       return_dict=True)
    remote = spark_model.evaluate(frame, "image", "label", **kwargs)
    assert remote["loss"] == pytest.approx(local["loss"], rel=1e-4)
    assert remote["accuracy"] == pytest.approx(local["accuracy"], abs=1e-6)
    assert local["accuracy"] > 0.9  # the dominant channel is easy to learn
    predicted = _predicted_by_id(spark_model.predict(frame, "image", raw=True, **kwargs))
    expected = spark_model.model.predict(pixels.astype("float32"), verbose=0)
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-5)


def test_binary_column_with_decode_fits_evaluates_and_predicts(png_frame, pictures):
    _fit_evaluate_predict(png_frame, *pictures, decode=png_to_array)


def test_image_data_source_is_decoded_to_rgb(image_frame, pictures):
    from sparkeras.data import batches_to_arrays, projection, resolve_data_spec

    spec = resolve_data_spec(image_frame.schema, "image", "label", [(None, SIDE, SIDE, 3)],
                             [(None, 2)], ["uint8"])
    table = image_frame.orderBy("id").select(*projection(spec)).toArrow()
    x, y = batches_to_arrays(table, spec)
    pixels, label = pictures
    assert x.dtype == np.uint8
    np.testing.assert_array_equal(x, pixels)  # RGB, as Pillow reads them
    np.testing.assert_array_equal(y, label)


def test_image_column_fits_evaluates_and_predicts(image_frame, pictures):
    _fit_evaluate_predict(image_frame, *pictures)


def test_decode_dict_for_one_of_two_inputs(spark, png_frame, pictures):
    import keras

    from sparkeras import SparkModel

    pixels, label = pictures
    frame = png_frame.withColumn("bias", (png_frame.label * 0.0 + 1.0))
    image_in, bias_in = keras.Input((SIDE, SIDE, 3)), keras.Input((1,))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(image_in))
    merged = keras.layers.Concatenate()([features, bias_in])
    model = keras.Model([image_in, bias_in], keras.layers.Dense(2, activation="softmax")(merged))
    model.compile("adam", "sparse_categorical_crossentropy")
    spark_model = SparkModel(model, num_workers=2)
    spark_model.fit(frame, ["image", "bias"], "label", epochs=1, verbose=0,
                    decode={"image": png_to_array})
    predicted = _predicted_by_id(
        spark_model.predict(frame, ["image", "bias"], decode={"image": png_to_array}, raw=True))
    expected = model.predict([pixels.astype("float32"), np.ones((len(label), 1))], verbose=0)
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-5)


def test_estimator_pipeline_with_decode_saves_and_loads(png_frame, pictures, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel

    from sparkeras import KerasEstimator

    estimator = KerasEstimator(model=_cnn(), featuresCol="image", epochs=3, batchSize=16,
                               numWorkers=2, decode=png_to_array)
    fitted = Pipeline(stages=[estimator]).fit(png_frame)
    scored = fitted.transform(png_frame).select("id", "prediction", "label").toPandas()
    assert (scored["prediction"] == scored["label"]).mean() > 0.9
    Pipeline(stages=[estimator]).write().overwrite().save(str(tmp_path / "unfitted"))
    assert Pipeline.load(str(tmp_path / "unfitted")).getStages()[0].getDecode() is not None
    fitted.write().overwrite().save(str(tmp_path / "fitted"))
    assert os.path.isfile(tmp_path / "fitted" / "stages" / os.listdir(
        tmp_path / "fitted" / "stages")[0] / "decode.pkl")
    loaded = PipelineModel.load(str(tmp_path / "fitted"))
    decode = loaded.stages[0].getDecode()
    pixels, _ = pictures
    np.testing.assert_array_equal(decode([png_bytes(pixels[0])]), pixels[:1])
    again = loaded.transform(png_frame).select("id", "prediction").toPandas()
    np.testing.assert_array_equal(again.sort_values("id")["prediction"].to_numpy(),
                                  scored.sort_values("id")["prediction"].to_numpy())


WORDS = {0: ["dull", "grey", "slow", "cold"], 1: ["bright", "happy", "fast", "warm"]}


def _texts(spark, rows=ROWS, seed=1):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, rows)
    text = [" ".join(rng.choice(WORDS[int(k)], 3)) for k in label]
    return spark.createDataFrame(pd.DataFrame({"text": text, "label": label,
                                               "id": np.arange(rows)})), text, label


def _tensor(text):
    import tensorflow as tf

    return tf.constant(text)[:, None]


def _text_model():
    import keras

    keras.utils.set_random_seed(0)
    vectorize = keras.layers.TextVectorization(output_mode="multi_hot",
                                               vocabulary=[*WORDS[0], *WORDS[1]])
    text_in = keras.Input((1,), dtype="string")
    words = keras.layers.Flatten()(vectorize(text_in))  # (None, 1, vocabulary) to 2-D
    out = keras.layers.Dense(2, activation="softmax")(words)
    model = keras.Model(text_in, out)
    model.compile(keras.optimizers.Adam(0.1), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_string_column_feeds_a_string_input(spark):
    from sparkeras import SparkModel

    frame, text, label = _texts(spark)
    spark_model = SparkModel(_text_model(), num_workers=2)
    # batch_size=2: 60 steps a round, so the replica trains through model.fit (not
    # train_on_batch), which takes text only as tf.string tensors.
    spark_model.fit(frame, "text", "label", epochs=2, batch_size=2, verbose=0)
    local = spark_model.model.evaluate(_tensor(text), label, verbose=0, return_dict=True)
    remote = spark_model.evaluate(frame, "text", "label")
    assert remote["accuracy"] == pytest.approx(local["accuracy"]) and local["accuracy"] > 0.9
    predicted = _predicted_by_id(spark_model.predict(frame, "text", raw=True))
    expected = spark_model.model.predict(_tensor(text), verbose=0)
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-5)


def test_string_column_in_an_estimator_pipeline(spark, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel

    from sparkeras import KerasEstimator

    frame, _, _ = _texts(spark)
    estimator = KerasEstimator(model=_text_model(), featuresCol="text", epochs=3,
                               batchSize=16, numWorkers=2)
    fitted = Pipeline(stages=[estimator]).fit(frame)
    fitted.write().overwrite().save(str(tmp_path / "text"))
    scored = PipelineModel.load(str(tmp_path / "text")).transform(frame).toPandas()
    assert (scored["prediction"] == scored["label"]).mean() > 0.9


# Bad input -------------------------------------------------------------------------


def failing_decode(values):
    """Decodes, except a value that is not a PNG."""
    if any(not v.startswith(b"\x89PNG") for v in values):
        raise ValueError("not a PNG file")
    return png_to_array(values)


def test_decode_that_raises_names_column_row_and_function(spark, pictures):
    from sparkeras import SparkModel
    from sparkeras.data import DataContentError

    pixels, label = pictures
    values = [png_bytes(p) for p in pixels[:40]]
    values[7] = b"garbage"
    frame = spark.createDataFrame(pd.DataFrame({"image": values, "label": label[:40]}))
    with pytest.raises(DataContentError) as info:
        SparkModel(_cnn(), num_workers=1).fit(frame.repartition(1), "image", "label", verbose=0,
                                              decode=failing_decode)
    fragments = ["'failing_decode'", "column 'image'", "at row 7 of a batch of 40",
                 "ValueError: not a PNG file", "value=b'garbage'"]
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    spark_model = SparkModel(_cnn(), num_workers=1)
    with pytest.raises(DataContentError) as info:  # raised bare, not as Spark's job error
        spark_model.evaluate(frame.repartition(1), "image", "label", decode=failing_decode)
    assert all(fragment in str(info.value) for fragment in fragments), str(info.value)
    predicted = spark_model.predict(frame.repartition(1), "image", decode=failing_decode)
    with pytest.raises(Exception) as info:  # lazy: the action's Spark error carries it
        predicted.collect()
    assert all(fragment in str(info.value) for fragment in fragments[:3]), str(info.value)


def test_decode_returning_the_wrong_shape(spark, png_frame):
    from sparkeras import SparkModel
    from sparkeras.data import DataContentError

    def half_size(values):
        return png_to_array(values)[:, ::2, ::2]

    with pytest.raises(DataContentError) as info:
        SparkModel(_cnn(), num_workers=2).fit(png_frame, "image", "label", verbose=0,
                                              decode=half_size)
    message = str(info.value)
    for fragment in ["'test_decode_returning_the_wrong_shape.<locals>.half_size'",
                     "column 'image'", "returned an array of shape (", ", 8, 8, 3)",
                     "(None, 16, 16, 3)"]:
        assert fragment in message, (fragment, message)


def test_image_of_the_wrong_size_names_the_column(spark, image_frame):
    import keras

    from sparkeras import SparkModel
    from sparkeras.data import DataContentError

    model = keras.Sequential([keras.Input((SIDE * 2, SIDE * 2, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(DataContentError) as info:
        SparkModel(model, num_workers=2).fit(image_frame, "image", "label", verbose=0)
    message = str(info.value)
    for fragment in ["Image column 'image'", "16 x 16 x 3", "takes 32 x 32 x 3",
                     "Received: size=(16, 16, 3)"]:
        assert fragment in message, (fragment, message)


def test_binary_column_without_decode_is_refused_before_any_job(spark, png_frame):
    from helpers import job_count

    from sparkeras import SparkModel
    from sparkeras.data import DataSchemaError

    before = job_count(spark)
    with pytest.raises(DataSchemaError, match=r"needs decode=\{'image': function\}"):
        SparkModel(_cnn(), num_workers=2).fit(png_frame, "image", "label")
    assert job_count(spark) == before


def test_bad_decode_arguments_are_refused_by_the_driver(png_frame):
    from sparkeras.data import DataSchemaError, resolve_data_spec

    schema = png_frame.schema
    shapes = ([(None, SIDE, SIDE, 3)], [(None, 2)])
    with pytest.raises(DataSchemaError, match="decode must be a function"):
        resolve_data_spec(schema, "image", "label", *shapes, decode="png")
    with pytest.raises(DataSchemaError, match=r"not in features_col \['image'\]"):
        resolve_data_spec(schema, "image", "label", *shapes, decode={"imgae": png_to_array})
    with pytest.raises(DataSchemaError, match="no column of features_col is binary or string"):
        resolve_data_spec(schema, "id", "label", [(None, 1)], [(None, 2)], decode=png_to_array)
    with pytest.raises(DataSchemaError, match="which sparkeras converts itself"):
        resolve_data_spec(schema, ["image", "id"], "label", *shapes,
                          decode={"image": png_to_array, "id": png_to_array})


def test_image_column_must_feed_an_image_input(image_frame):
    from sparkeras.data import DataSchemaError, resolve_data_spec

    with pytest.raises(DataSchemaError, match="must be the only column of a model input"):
        resolve_data_spec(image_frame.schema, "image", "label", [(None, SIDE * SIDE * 3)],
                          [(None, 2)])


def test_string_input_under_jax_names_decode(spark):
    from sparkeras.data import DataSchemaError, resolve_data_spec

    frame, _, _ = _texts(spark, rows=4)
    with pytest.raises(DataSchemaError) as info:
        resolve_data_spec(frame.schema, "text", "label", [(None, 1)], [(None, 2)], ["string"],
                          backend="jax")
    message = str(info.value)
    for fragment in ["only the TensorFlow backend", "decode={'text': function}",
                     "Received: backend='jax'"]:
        assert fragment in message, (fragment, message)
    with pytest.raises(DataSchemaError, match="has dtype 'string': it takes text"):
        resolve_data_spec(frame.schema, "label", None, [(None, 1)], [(None, 2)], ["string"])


def test_string_model_under_jax_fails_before_any_job(tmp_path):
    """A whole fit under KERAS_BACKEND=jax, in a child process with its own Spark."""
    child = tmp_path / "child.py"
    child.write_text(
        "import keras, pandas as pd, sparkeras\n"
        "from sparkeras import SparkModel\n"
        "from sparkeras.data import DataSchemaError\n"
        "spark = sparkeras.get_spark('local[1]', conf={'spark.driver.host': '127.0.0.1'})\n"
        "frame = spark.createDataFrame(pd.DataFrame({'text': ['a b'] * 4, 'label': [0, 1] * 2}))\n"
        "text_in = keras.Input((1,), dtype='string')\n"
        "lookup = keras.layers.StringLookup(vocabulary=['a b'])(text_in)\n"
        "model = keras.Model(text_in, keras.layers.Dense(2)(keras.ops.cast(lookup, 'float32')))\n"
        "model.compile('adam', 'sparse_categorical_crossentropy')\n"
        "jobs = spark.sparkContext.statusTracker().getJobIdsForGroup()\n"
        "try:\n"
        "    SparkModel(model, num_workers=1).fit(frame, 'text', 'label', verbose=0)\n"
        "except DataSchemaError as error:\n"
        "    print('REFUSED', keras.backend.backend(), str(error))\n"
        "print('JOBS', len(spark.sparkContext.statusTracker().getJobIdsForGroup()) - len(jobs))\n"
        "spark.stop()\n"
        "import os, sys; sys.stdout.flush(); os._exit(0)  # no wait on Spark's threads\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, str(child)], capture_output=True, text=True,
                            env=env, timeout=600, check=False)
    assert "REFUSED jax" in result.stdout, result.stdout + result.stderr[-3000:]
    assert "decode={'text': function}" in result.stdout
    assert "JOBS 0" in result.stdout


def test_null_image_is_refused_by_name(spark):
    """A frame built with the ImageSchema field layout, one image null."""
    from pyspark.sql import types as T

    from sparkeras.data import DataContentError, batches_to_arrays, projection, resolve_data_spec

    image = T.StructType([
        T.StructField("origin", T.StringType()), T.StructField("height", T.IntegerType()),
        T.StructField("width", T.IntegerType()), T.StructField("nChannels", T.IntegerType()),
        T.StructField("mode", T.IntegerType()), T.StructField("data", T.BinaryType()),
    ])
    bgr = bytes(range(2 * 2 * 3))
    frame = spark.createDataFrame([(("a", 2, 2, 3, 16, bgr),), (None,)],
                                  T.StructType([T.StructField("picture", image)]))
    spec = resolve_data_spec(frame.schema, "picture", None, [(None, 2, 2, 3)], [(None, 1)])
    x, _ = batches_to_arrays(frame.limit(1).select(*projection(spec)).toArrow(), spec)
    np.testing.assert_array_equal(x[0], np.frombuffer(bgr, np.uint8).reshape(2, 2, 3)[..., ::-1])
    with pytest.raises(DataContentError, match="'picture' has 1 null image"):
        batches_to_arrays(frame.select(*projection(spec)).toArrow(), spec)
