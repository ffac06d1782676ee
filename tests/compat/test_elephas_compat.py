"""elephas' documented usage, with only the imports changed, on sparkeras.

Written from elephas' README and documented usage (basic Spark integration with
SparkModel and AsynchronousSparkModel, regression, a functional model, custom objects, the Spark ML
pipeline, saving and loading); each test checks results, not just that it runs.
"""

import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def digits_arrays():
    """elephas' tests use MNIST; the bundled 8x8 digits keep these offline and quick."""
    import keras
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = keras.utils.to_categorical(digits.target, 10)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return x[:1300], y[:1300], x[1300:], y[1300:]


def _classifier(optimizer=None):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential()
    model.add(keras.Input((64,)))
    model.add(keras.layers.Dense(64, activation="relu"))
    model.add(keras.layers.Dropout(0.1))
    model.add(keras.layers.Dense(10, activation="softmax"))
    model.compile(
        optimizer or keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
        "categorical_crossentropy",
        metrics=["acc"],
    )
    return model


@pytest.mark.parametrize("kind", ["SparkModel", "AsynchronousSparkModel"])
def test_basic_spark_integration_trains_and_evaluates(spark, digits_arrays, kind):
    """elephas 7's README: SparkModel(model) trains synchronously; the async class is apart."""
    from sparkeras.compat.elephas import spark_model as module
    from sparkeras.compat.elephas.utils.rdd_utils import to_simple_rdd

    x_train, y_train, x_test, y_test = digits_arrays
    rdd = to_simple_rdd(spark.sparkContext, x_train, y_train)
    if kind == "SparkModel":
        spark_model = module.SparkModel(_classifier(), num_workers=2)
        assert spark_model.mode == "synchronous"
    else:
        spark_model = module.AsynchronousSparkModel(
            _classifier(), frequency="epoch", mode="asynchronous", num_workers=2
        )
        assert spark_model.get_config()["parameter_server_mode"] == "http"
    history = spark_model.fit(rdd, epochs=4, batch_size=32, verbose=0, validation_split=0.1)
    assert len(history.history["val_acc"]) == 4 and spark_model.training_histories
    loss, accuracy = spark_model.evaluate(x_test, y_test)
    expected = spark_model.master_network.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.85
    assert [loss, accuracy] == pytest.approx(expected, abs=1e-4)
    predictions = spark_model.predict(x_test)
    assert len(predictions) == len(x_test) and predictions[0].shape == (10,)
    np.testing.assert_allclose(
        np.stack(predictions), spark_model.master_network.predict(x_test, verbose=0), atol=1e-5
    )


def test_regression_with_an_rdd_to_predict(spark):
    import keras

    from sparkeras.compat.elephas.spark_model import SparkModel
    from sparkeras.compat.elephas.utils.rdd_utils import to_simple_rdd

    rng = np.random.default_rng(1)
    x = rng.normal(size=(800, 13)).astype("float32")
    y = (x @ rng.normal(size=13) + 3.0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((13,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.Adam(0.1), "mse", metrics=["mae"])
    spark_model = SparkModel(model, frequency="epoch", mode="synchronous", num_workers=2)
    spark_model.fit(
        to_simple_rdd(spark.sparkContext, x[:600], y[:600]),
        epochs=10,
        batch_size=32,
        verbose=0,
        validation_split=0.1,
    )
    mse, mae = spark_model.evaluate(x[600:], y[600:])
    assert mse < 0.1 * float(np.var(y)), (mse, np.var(y))
    rows = spark.sparkContext.parallelize(list(x[600:]), 3)
    predicted = np.stack(spark_model.predict(rows))
    assert predicted.shape == (200, 1)
    np.testing.assert_allclose(
        predicted, spark_model.master_network.predict(x[600:], verbose=0), atol=1e-4
    )


def test_functional_model_with_two_inputs(spark, digits_arrays):
    import keras

    from sparkeras.compat.elephas.spark_model import SparkModel
    from sparkeras.compat.elephas.utils.rdd_utils import to_simple_rdd

    x_train, y_train, x_test, y_test = digits_arrays
    keras.utils.set_random_seed(0)
    top, bottom = keras.Input((32,), name="top"), keras.Input((32,), name="bottom")
    merged = keras.layers.Concatenate()(
        [
            keras.layers.Dense(32, activation="relu")(top),
            keras.layers.Dense(32, activation="relu")(bottom),
        ]
    )
    model = keras.Model([top, bottom], keras.layers.Dense(10, activation="softmax")(merged))
    model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", metrics=["acc"])
    # As in elephas, each row's features are the inputs side by side.
    spark_model = SparkModel(model, mode="synchronous", num_workers=2)
    spark_model.fit(
        to_simple_rdd(spark.sparkContext, x_train, y_train), epochs=4, batch_size=32, verbose=0
    )
    _, accuracy = spark_model.evaluate(x_test, y_test)
    assert accuracy > 0.85
    expected = spark_model.master_network.predict([x_test[:, :32], x_test[:, 32:]], verbose=0)
    np.testing.assert_allclose(np.stack(spark_model.predict(x_test)), expected, atol=1e-5)


def test_custom_activation_via_custom_objects(spark):
    import keras

    from sparkeras.compat.elephas.spark_model import SparkModel
    from sparkeras.compat.elephas.utils.rdd_utils import to_simple_rdd

    def custom_activation(x):
        return keras.ops.sigmoid(x) + 1

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(1, activation=custom_activation),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(keras.optimizers.SGD(learning_rate=0.1), "binary_crossentropy", metrics=["acc"])
    rng = np.random.default_rng(0)
    x_train = rng.random(200).astype("float32")
    y_train = (x_train > 0.5).astype("float32")
    spark_model = SparkModel(
        model,
        custom_objects={"custom_activation": custom_activation},
        mode="synchronous",
        num_workers=2,
    )
    spark_model.fit(
        to_simple_rdd(spark.sparkContext, x_train, y_train),
        epochs=2,
        batch_size=16,
        verbose=0,
        validation_split=0.1,
    )
    x_test = rng.random(20).astype("float32")
    predictions = spark_model.predict(x_test)
    assert len(predictions) == 20
    np.testing.assert_allclose(
        np.stack(predictions), spark_model.master_network.predict(x_test, verbose=0), atol=1e-5
    )
    loss, accuracy = spark_model.evaluate(x_test, (x_test > 0.5).astype("float32"))
    assert 0 < loss < 10 and 0 <= accuracy <= 1


def test_spark_ml_pipeline_with_elephas_params(spark, digits_arrays, tmp_path):
    import keras
    from pyspark.ml import Pipeline

    from sparkeras.compat.elephas.ml.adapter import to_data_frame
    from sparkeras.compat.elephas.ml_model import (
        ElephasEstimator,
        load_ml_estimator,
        load_ml_transformer,
    )

    x_train, y_train, x_test, y_test = digits_arrays
    df = to_data_frame(spark.sparkContext, x_train, y_train, categorical=True)
    test_df = to_data_frame(spark.sparkContext, x_test, y_test, categorical=True)
    model = _classifier()
    estimator = ElephasEstimator()
    estimator.set_keras_model_config(model.to_json())
    estimator.set_optimizer_config(
        keras.optimizers.serialize(keras.optimizers.SGD(learning_rate=0.1, momentum=0.9))
    )
    estimator.set_mode("synchronous")
    estimator.set_loss("categorical_crossentropy")
    estimator.set_metrics(["acc"])
    estimator.set_epochs(6)
    estimator.set_batch_size(32)
    estimator.set_validation_split(0.1)
    estimator.set_categorical_labels(True)
    estimator.set_nb_classes(10)
    estimator.set_num_workers(2)

    fitted = Pipeline(stages=[estimator]).fit(df)
    prediction = fitted.transform(test_df).select("label", "prediction").toPandas()
    probabilities = np.stack(prediction["prediction"])
    assert probabilities.shape == (len(x_test), 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == prediction["label"]))
    assert accuracy > 0.85
    transformer = fitted.stages[0]
    assert len(transformer.history[0]["val_acc"]) == 6

    # elephas' own persistence: the unfitted pipeline, the estimator, the transformer.
    Pipeline(stages=[estimator]).save(str(tmp_path / "pipeline"))
    reloaded = Pipeline.load(str(tmp_path / "pipeline")).getStages()[0]
    assert reloaded.get_epochs() == 6 and reloaded.get_mode() == "synchronous"
    estimator.save(str(tmp_path / "estimator.h5"))
    assert load_ml_estimator(str(tmp_path / "estimator.h5")).get_nb_classes() == 10
    transformer.save(str(tmp_path / "transformer.h5"))
    again = load_ml_transformer(str(tmp_path / "transformer.h5"))
    np.testing.assert_allclose(
        np.stack(again.transform(test_df).toPandas()["prediction"]), probabilities, atol=1e-5
    )


def test_regression_transformer_outputs_a_double(spark):
    import keras

    from sparkeras.compat.elephas.ml.adapter import to_data_frame
    from sparkeras.compat.elephas.ml_model import ElephasEstimator

    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 4)).astype("float32")
    y = x.sum(axis=1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    estimator = ElephasEstimator(
        keras_model_config=model.to_json(),
        loss="mse",
        metrics=["mae"],
        categorical=False,
        optimizer_config=keras.optimizers.serialize(keras.optimizers.Adam(0.1)),
        mode="synchronous",
        epochs=20,
        batch_size=32,
        validation_split=0.0,
        num_workers=2,
        outputCol="output",
    )
    fitted = estimator.fit(to_data_frame(spark.sparkContext, x, y))
    result = fitted.transform(to_data_frame(spark.sparkContext, x[:50], y[:50]))
    assert dict(result.dtypes)["output"] == "double"
    rows = result.toPandas()
    assert float(np.mean(np.abs(rows["output"] - rows["label"]))) < 0.2


def test_save_and_load_spark_model(spark, digits_arrays, tmp_path):
    from sparkeras.compat.elephas.spark_model import SparkModel, load_spark_model
    from sparkeras.compat.elephas.utils.rdd_utils import to_simple_rdd

    x_train, y_train, x_test, _ = digits_arrays
    spark_model = SparkModel(
        _classifier(), mode="synchronous", frequency="batch", num_workers=2, batch_size=64
    )  # elephas 6's keywords still work
    spark_model.fit(
        to_simple_rdd(spark.sparkContext, x_train[:256], y_train[:256]), epochs=1, verbose=0
    )
    expected = spark_model.master_network.predict(x_test, verbose=0)
    for name in ("model.keras", "model.h5"):
        path = str(tmp_path / name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras calls .h5 a legacy format
            spark_model.save(path)
        loaded = load_spark_model(path)
        assert loaded.get_config() == spark_model.get_config()
        assert loaded.mode == "synchronous" and loaded.frequency == "batch"
        assert loaded.batch_size == 64
        np.testing.assert_allclose(
            loaded.master_network.predict(x_test, verbose=0), expected, rtol=1e-6
        )
        with pytest.raises(FileExistsError, match="overwrite=True"):
            spark_model.save(path)
        spark_model.save(path, overwrite=True)
    uri = f"file://{tmp_path}/hdfs-like/model.keras"
    (tmp_path / "hdfs-like").mkdir()
    spark_model.save(uri, to_hadoop=True)
    assert load_spark_model(uri, from_hadoop=True).batch_size == 64
    with pytest.raises(ValueError, match=r"must end with \.keras"):
        spark_model.save(str(tmp_path / "model.pkl"))


def test_elephas_only_options_warn_once_and_change_nothing(spark, digits_arrays):
    from sparkeras.compat.elephas import ElephasCompatWarning, SparkModel, _warnings, to_simple_rdd

    _warnings._warned.clear()
    x_train, y_train, _, _ = digits_arrays
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            spark_model = SparkModel(
                _classifier(),
                mode="synchronous",
                num_workers=2,
                parameter_server_mode="socket",
                elephas_optimizer="sgd",
            )
        spark_model.fit(
            to_simple_rdd(spark.sparkContext, x_train[:128], y_train[:128]),
            epochs=1,
            verbose=0,
            shuffle=True,
        )
    texts = sorted(str(w.message) for w in caught if w.category is ElephasCompatWarning)
    assert len(texts) == 3, texts  # once per option, not once per use
    for expected in ("'elephas_optimizer'", "'shuffle'", "parameter_server_mode='socket'"):
        assert sum(expected in text for text in texts) == 1, (expected, texts)
    assert spark_model.get_config()["elephas_optimizer"] == "sgd"
    with pytest.raises(ValueError, match="parameter_server_mode must be"):
        SparkModel(_classifier(), parameter_server_mode="grpc")
    import keras

    with pytest.raises(ValueError, match="not compiled"):
        SparkModel(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    mixed = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    mixed.compile("sgd", "mse", ["mae", 1.0])  # strings and numbers: not tf.keras' metrics
    with pytest.raises(ValueError, match=r"metrics=\[\.\.\.\] by keyword"):
        SparkModel(mixed)
