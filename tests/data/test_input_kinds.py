"""Every supported feature and label layout trains and predicts on real Spark."""

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.spark

ROWS = 256


def _compiled(model, loss, metrics=None):
    import keras

    model.compile(keras.optimizers.Adam(0.01), loss, metrics=metrics)
    return model


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, 4)).astype("float32")
    label = (x[:, 0] + x[:, 1] > 0).astype("int64")
    return x, label


def _fit_and_predict(model, frame, features_col, label_col):
    from sparkeras import SparkModel

    spark_model = SparkModel(model, num_workers=2)
    history = spark_model.fit(frame, features_col=features_col, label_col=label_col, epochs=2,
                              batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    predicted = spark_model.predict(frame, features_col=features_col)
    assert predicted.count() == ROWS
    return spark_model, predicted


def _classifier(inputs=4):
    import keras

    return _compiled(
        keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(2, activation="softmax")]),
        "sparse_categorical_crossentropy", ["accuracy"],
    )


def test_vector_column(spark):
    from pyspark.ml.feature import VectorAssembler

    x, label = _data()
    frame = spark.createDataFrame(pd.DataFrame({**{f"c{i}": x[:, i] for i in range(4)},
                                                "label": label}))
    frame = VectorAssembler(inputCols=["c0", "c1", "c2", "c3"], outputCol="features").transform(
        frame)
    spark_model, predicted = _fit_and_predict(_classifier(), frame, "features", "label")
    rows = predicted.toPandas()
    expected = spark_model.model.predict(rows[["c0", "c1", "c2", "c3"]].to_numpy("float32"),
                                         verbose=0)
    np.testing.assert_allclose(np.stack(rows["probability"]), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(rows["prediction"], np.argmax(expected, axis=1))


def test_array_column(spark):
    x, label = _data()
    frame = spark.createDataFrame(pd.DataFrame({"features": list(x.astype("float64")),
                                                "label": label}))
    _fit_and_predict(_classifier(), frame, "features", "label")


def test_numeric_columns(spark):
    x, label = _data()
    frame = spark.createDataFrame(pd.DataFrame({**{f"c{i}": x[:, i] for i in range(4)},
                                                "label": label}))
    _, predicted = _fit_and_predict(_classifier(), frame, ["c0", "c1", "c2", "c3"], "label")
    first = predicted.first()
    assert len(first["probability"]) == 2 and first["prediction"] in (0.0, 1.0)


def test_multi_input_model(spark):
    import keras

    x, label = _data()
    left, right = keras.Input((2,), name="left"), keras.Input((2,), name="right")
    merged = keras.layers.Concatenate()([left, right])
    model = _compiled(
        keras.Model([left, right], keras.layers.Dense(2, activation="softmax")(merged)),
        "sparse_categorical_crossentropy", ["accuracy"],
    )
    frame = spark.createDataFrame(pd.DataFrame({"a": list(x[:, :2]), "b0": x[:, 2],
                                                "b1": x[:, 3], "label": label}))
    spark_model, predicted = _fit_and_predict(model, frame, ["a", ["b0", "b1"]], "label")
    rows = predicted.toPandas()
    expected = spark_model.model.predict(
        [np.stack(rows["a"]).astype("float32"), rows[["b0", "b1"]].to_numpy("float32")],
        verbose=0)
    np.testing.assert_allclose(np.stack(rows["probability"]), expected, rtol=1e-5, atol=1e-6)


def test_one_hot_labels(spark):
    import keras

    x, label = _data()
    one_hot = np.eye(2, dtype="float32")[label]
    model = _compiled(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")]),
        "categorical_crossentropy", ["accuracy"],
    )
    frame = spark.createDataFrame(pd.DataFrame({"features": list(x), "label": list(one_hot)}))
    _fit_and_predict(model, frame, "features", "label")


def test_regression_float_label(spark):
    import keras

    x, _ = _data()
    target = (x @ np.array([1.0, -2.0, 0.5, 0.0])).astype("float64")
    model = _compiled(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]), "mse")
    frame = spark.createDataFrame(pd.DataFrame({"features": list(x), "target": target}))
    spark_model, predicted = _fit_and_predict(model, frame, "features", "target")
    rows = predicted.toPandas()
    expected = spark_model.model.predict(np.stack(rows["features"]).astype("float32"), verbose=0)
    np.testing.assert_allclose(rows["prediction"].to_numpy(), expected[:, 0], rtol=1e-5,
                               atol=1e-6)


def test_multi_output_model(spark):
    import keras

    x, label = _data()
    target = x.sum(axis=1)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(2, activation="softmax", name="cls")(hidden),
                                 keras.layers.Dense(1, name="reg")(hidden)])
    model = _compiled(model, ["sparse_categorical_crossentropy", "mse"])
    frame = spark.createDataFrame(pd.DataFrame({"features": list(x), "label": label,
                                                "target": target}))
    _, predicted = _fit_and_predict(model, frame, "features", ["label", "target"])
    assert {"prediction_cls", "prediction_reg"} <= set(predicted.columns)


def test_validation_frame_with_another_feature_kind_than_training(spark):
    from pyspark.ml.feature import VectorAssembler

    from sparkeras import SparkModel

    x, label = _data()
    train = spark.createDataFrame(pd.DataFrame({"features": list(x), "label": label}))
    x_val, label_val = _data(seed=1)
    validation = VectorAssembler(inputCols=["c0", "c1", "c2", "c3"], outputCol="features")
    validation = validation.transform(spark.createDataFrame(pd.DataFrame(
        {**{f"c{i}": x_val[:, i] for i in range(4)}, "label": label_val})))
    spark_model = SparkModel(_classifier(), num_workers=2)
    history = spark_model.fit(train, epochs=2, batch_size=32, validation_data=validation,
                              verbose=0)
    expected = spark_model.model.evaluate(x_val, label_val, verbose=0, return_dict=True)
    assert history.history["val_accuracy"][-1] == pytest.approx(expected["accuracy"], abs=0.005)
