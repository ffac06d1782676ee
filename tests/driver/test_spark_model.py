"""SparkModel on a real local[2] Spark: training, evaluation, prediction, I/O."""

import numpy as np
import pytest
from helpers import dense_classifier, digits_arrays

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def trained(digits):
    """A 2-worker synchronous fit of the digits MLP, shared by several tests."""
    from sparkeras import SparkModel

    train_df, test_df = digits
    spark_model = SparkModel(dense_classifier(), num_workers=2)
    history = spark_model.fit(train_df, epochs=8, batch_size=32, validation_data=test_df,
                              verbose=0)
    return spark_model, history


def test_sync_accuracy_matches_single_process_keras(digits, trained):
    train_df, test_df = digits
    x_train, y_train = digits_arrays(train_df)
    x_test, y_test = digits_arrays(test_df)
    baseline = dense_classifier()
    baseline.fit(x_train, y_train, epochs=8, batch_size=32, verbose=0)
    _, baseline_accuracy = baseline.evaluate(x_test, y_test, verbose=0)
    spark_model, _ = trained
    _, accuracy = spark_model.model.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.9
    assert abs(accuracy - baseline_accuracy) <= 0.02, (accuracy, baseline_accuracy)


def test_history_is_global_and_per_epoch(trained):
    _, history = trained
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(history.history[key]) == 8, key
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.85


def test_training_summary_reports_every_worker(trained, digits):
    spark_model, _ = trained
    summary = spark_model.training_summary
    assert [row["worker"] for row in summary] == [0, 1]
    assert sum(row["samples"] for row in summary) == digits[0].count()
    assert all(row["epochs_trained"] == 8 for row in summary)


def test_evaluate_equals_keras_evaluate(digits, trained):
    _, test_df = digits
    spark_model, _ = trained
    x_test, y_test = digits_arrays(test_df)
    expected = spark_model.model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    result = spark_model.evaluate(test_df.repartition(3))
    assert set(result) == set(expected)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, abs=1e-4), name


def test_predict_equals_keras_predict_and_keeps_rows(digits, trained):
    _, test_df = digits
    spark_model, _ = trained
    frame = test_df.withColumn("row_note", test_df.label * 10)
    predicted = spark_model.predict(frame)
    assert predicted.columns == [*frame.columns, "probability", "prediction"]
    rows = predicted.toPandas()
    assert len(rows) == frame.count()
    expected = spark_model.model.predict(np.stack(rows["features"]).astype("float32"), verbose=0)
    np.testing.assert_allclose(np.stack(rows["probability"]), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(rows["prediction"], np.argmax(expected, axis=1))
    assert predicted.schema["prediction"].dataType.simpleString() == "double"
    assert (rows["row_note"] == rows["label"] * 10).all()


def test_save_and_load_round_trip(tmp_path, digits, trained):
    from sparkeras import SparkModel

    spark_model, _ = trained
    path = str(tmp_path / "digits.keras")
    spark_model.save(path)
    loaded = SparkModel.load(path, num_workers=2)
    x_test, _ = digits_arrays(digits[1])
    np.testing.assert_allclose(
        loaded.model.predict(x_test, verbose=0), spark_model.model.predict(x_test, verbose=0),
        rtol=1e-6,
    )
    assert loaded.model.optimizer.__class__ is spark_model.model.optimizer.__class__


@pytest.mark.parametrize("frequency", ["batch", 5])
def test_sub_epoch_frequencies_train(digits, frequency):
    from sparkeras import SparkModel

    train_df, test_df = digits
    spark_model = SparkModel(dense_classifier(), frequency=frequency, num_workers=2)
    history = spark_model.fit(train_df, epochs=2, batch_size=64, verbose=0)
    assert len(history.history["loss"]) == 2
    assert spark_model.evaluate(test_df)["accuracy"] > 0.85


def test_early_stopping_decision_reaches_every_worker(digits):
    import keras

    from sparkeras import SparkModel

    train_df, test_df = digits
    spark_model = SparkModel(dense_classifier(), num_workers=2)
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0)
    history = spark_model.fit(train_df, epochs=6, validation_data=test_df, callbacks=[stopper],
                              verbose=0)
    assert len(history.history["loss"]) == 2
    assert all(row["epochs_trained"] == 2 for row in spark_model.training_summary)


def test_predict_raw_outputs_and_no_probability_column(digits, trained):
    _, test_df = digits
    spark_model, _ = trained
    raw = spark_model.predict(test_df, raw=True)
    assert raw.columns == [*test_df.columns, "prediction"]
    rows = raw.toPandas()
    expected = spark_model.model.predict(np.stack(rows["features"]).astype("float32"), verbose=0)
    np.testing.assert_allclose(np.stack(rows["prediction"]), expected, rtol=1e-5, atol=1e-6)
    classes = spark_model.predict(test_df, output_col="digit", probability_col=None)
    assert classes.columns == [*test_df.columns, "digit"]
    np.testing.assert_array_equal(
        classes.toPandas()["digit"], np.argmax(expected, axis=1).astype("float64")
    )
    with pytest.raises(ValueError, match="Received: probability_col='label'"):
        spark_model.predict(test_df, probability_col="label")


def test_a_refit_reuses_the_workers_compiled_model_and_goes_on_training(digits):
    from sparkeras import SparkModel

    train_df, test_df = digits
    x_test, y_test = digits_arrays(test_df)
    spark_model = SparkModel(dense_classifier(), num_workers=2)
    spark_model.fit(train_df, epochs=1, batch_size=32, verbose=0)
    first = {row["pid"] for row in spark_model.training_summary}
    loss_after_one = spark_model.model.evaluate(x_test, y_test, verbose=0)[0]
    spark_model.fit(train_df, epochs=2, batch_size=32, verbose=0)
    second = spark_model.training_summary
    # Spark hands the refit's tasks its idle Python workers: those of the first fit
    # kept its model (docs/data-path.md, "A refit reuses the traced model").
    assert first & {row["pid"] for row in second}
    assert all(row["warm_model"] for row in second if row["pid"] in first), second
    assert spark_model.model.evaluate(x_test, y_test, verbose=0)[0] < loss_after_one
