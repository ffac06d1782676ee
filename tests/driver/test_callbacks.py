"""Keras callbacks run on the driver with global logs; their decisions reach the workers."""

import csv
import glob
import math
import os

import numpy as np
import pytest
from helpers import dense_classifier

pytestmark = pytest.mark.spark


def _sgd_classifier(lr=0.1):
    import keras

    model = dense_classifier()
    model.compile(keras.optimizers.SGD(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _weights_at_epoch_ends(model, snapshots):
    import keras

    return keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights())
    )


def _same(first, second):
    return all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_checkpoint_csv_tensorboard_lambda_and_subclass_see_global_logs(digits, tmp_path):
    import keras
    import tensorflow as tf

    from sparkeras import SparkModel

    class Recorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.calls = []

        def on_train_begin(self, logs=None):
            self.calls.append(("train_begin", dict(self.params)))

        def on_epoch_begin(self, epoch, logs=None):
            self.calls.append(("epoch_begin", epoch))

        def on_epoch_end(self, epoch, logs=None):
            self.calls.append(("epoch_end", epoch, dict(logs)))

        def on_train_end(self, logs=None):
            self.calls.append(("train_end",))

    train_df, test_df = digits
    spark_model = SparkModel(dense_classifier(), num_workers=2)
    recorder, lambda_logs = Recorder(), []
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(tmp_path / "epoch-{epoch:02d}.keras")),
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        keras.callbacks.TensorBoard(str(tmp_path / "tb"), write_graph=False),
        keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: lambda_logs.append(logs)),
        recorder,
    ]
    history = spark_model.fit(
        train_df, epochs=3, batch_size=32, validation_data=test_df, callbacks=callbacks, verbose=0
    )

    # ModelCheckpoint saved the driver's global weights after every epoch.
    assert sorted(os.listdir(tmp_path)) >= ["epoch-01.keras", "epoch-02.keras", "epoch-03.keras"]
    last = keras.saving.load_model(str(tmp_path / "epoch-03.keras"))
    assert _same(last.get_weights(), spark_model.model.get_weights())
    # CSVLogger wrote one row of global logs per epoch, equal to the history.
    with open(tmp_path / "log.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert [float(row[key]) for row in rows] == pytest.approx(history.history[key])
    # TensorBoard wrote the epoch metrics as scalars.
    events = glob.glob(str(tmp_path / "tb" / "train" / "events.out.tfevents.*"))
    assert events
    tags = {
        value.tag
        for record in tf.data.TFRecordDataset(events)
        for value in tf.compat.v1.Event.FromString(record.numpy()).summary.value
    }
    assert "epoch_loss" in tags and "epoch_accuracy" in tags
    # LambdaCallback and a subclass: the Keras call order, global logs, fit params.
    assert [logs["val_loss"] for logs in lambda_logs] == pytest.approx(history.history["val_loss"])
    kinds = [call[0] for call in recorder.calls]
    assert kinds == ["train_begin"] + ["epoch_begin", "epoch_end"] * 3 + ["train_end"]
    params = recorder.calls[0][1]
    assert params["epochs"] == 3 and params["batch_size"] == 32 and params["num_workers"] == 2
    assert params["mode"] == "synchronous" and params["frequency"] == "epoch"


def test_learning_rate_scheduler_rate_reaches_the_workers(digits):
    import keras

    from sparkeras import SparkModel

    train_df, _ = digits
    model = _sgd_classifier()
    initial = model.get_weights()
    snapshots, rates = [], []
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 if epoch == 0 else 0.0)
    record_rate = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: rates.append(float(model.optimizer.learning_rate))
    )
    spark_model = SparkModel(model, num_workers=2)
    spark_model.fit(
        train_df,
        epochs=3,
        batch_size=32,
        callbacks=[schedule, record_rate, _weights_at_epoch_ends(model, snapshots)],
        verbose=0,
    )
    assert rates == pytest.approx([0.1, 0.0, 0.0])
    assert not _same(initial, snapshots[0])  # epoch 1 trained at 0.1 ...
    assert _same(snapshots[0], snapshots[1]) and _same(snapshots[1], snapshots[2])  # ... then 0


def test_learning_rate_scheduler_sets_the_first_epoch_too(digits):
    import keras

    from sparkeras import SparkModel

    model = _sgd_classifier(lr=0.5)
    initial = model.get_weights()
    frozen = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.0)
    spark_model = SparkModel(model, num_workers=2)
    spark_model.fit(digits[0], epochs=1, batch_size=64, callbacks=[frozen], verbose=0)
    assert _same(initial, spark_model.model.get_weights())


def test_early_stopping_restores_the_best_epochs_weights(digits):
    import keras

    from sparkeras import SparkModel

    snapshots = []
    model = dense_classifier()
    # The loss falls every epoch, so with mode="max" the best epoch is the first.
    stopper = keras.callbacks.EarlyStopping(
        monitor="loss", mode="max", patience=1, restore_best_weights=True
    )
    spark_model = SparkModel(model, num_workers=2)
    history = spark_model.fit(
        digits[0],
        epochs=5,
        batch_size=32,
        callbacks=[_weights_at_epoch_ends(model, snapshots), stopper],
        verbose=0,
    )
    assert len(history.history["loss"]) == 2
    assert all(row["epochs_trained"] == 2 for row in spark_model.training_summary)
    assert _same(spark_model.model.get_weights(), snapshots[0])
    assert not _same(snapshots[0], snapshots[1])


def test_stop_training_in_a_batch_hook_stops_workers_within_the_epoch(digits, monkeypatch):
    import keras

    from sparkeras import SparkModel, progress

    monkeypatch.setattr(progress, "REPORT_INTERVAL_S", 0.01)
    calls = []

    class StopAtOnce(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            calls.append(batch)
            self.model.stop_training = True

    spark_model = SparkModel(dense_classifier(), num_workers=2)
    history = spark_model.fit(
        digits[0], epochs=4, batch_size=4, callbacks=[StopAtOnce()], verbose=0
    )
    total = sum(math.ceil(row["samples"] / 4) for row in spark_model.training_summary)
    assert len(history.history["loss"]) == 1
    assert all(row["epochs_trained"] == 1 for row in spark_model.training_summary)
    assert calls[-1] + 1 < total / 2, (calls, total)  # the epoch's steps when it ended


def test_terminate_on_nan_stops_a_diverging_fit(spark):
    import keras
    import pandas as pd

    from sparkeras import SparkModel

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 4)).astype("float32")
    frame = spark.createDataFrame(pd.DataFrame({"features": list(x), "label": x.sum(axis=1)}))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(1e6), "mse")
    spark_model = SparkModel(model, num_workers=2)
    history = spark_model.fit(
        frame, epochs=5, batch_size=8, callbacks=[keras.callbacks.TerminateOnNaN()], verbose=0
    )
    assert len(history.history["loss"]) == 1
    assert not math.isfinite(history.history["loss"][0])


def test_mlflow_logger_logs_params_metrics_and_model(digits, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    import keras

    from sparkeras import SparkModel
    from sparkeras.callbacks import MLflowLogger

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(f"file:{tmp_path / 'mlruns'}")
    train_df, test_df = digits
    spark_model = SparkModel(dense_classifier(), num_workers=2)
    with mlflow.start_run() as run:
        history = spark_model.fit(
            train_df,
            epochs=2,
            batch_size=32,
            validation_data=test_df,
            callbacks=[MLflowLogger(params={"data": "digits"})],
            verbose=0,
        )
    client = mlflow.tracking.MlflowClient()
    logged = client.get_run(run.info.run_id).data
    assert logged.params["epochs"] == "2" and logged.params["num_workers"] == "2"
    assert logged.params["optimizer"] == "Adam" and logged.params["data"] == "digits"
    assert float(logged.params["learning_rate"]) == pytest.approx(0.01)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        steps = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in steps] == [0, 1]
        assert [m.value for m in steps] == pytest.approx(history.history[key])
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "model")]
    assert artifacts == [f"model/{spark_model.model.name}.keras"]
    path = client.download_artifacts(run.info.run_id, artifacts[0], str(tmp_path))
    assert _same(keras.saving.load_model(path).get_weights(), spark_model.model.get_weights())


def test_mlflow_logger_starts_and_ends_a_run_when_none_is_active(digits, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from sparkeras import SparkModel
    from sparkeras.callbacks import MLflowLogger

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(f"file:{tmp_path / 'mlruns'}")
    assert mlflow.active_run() is None
    SparkModel(dense_classifier(), num_workers=2).fit(
        digits[0],
        epochs=1,
        batch_size=64,
        verbose=0,
        callbacks=[MLflowLogger(log_model=False, run_name="sparkeras-test")],
    )
    assert mlflow.active_run() is None
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert [r.info.run_name for r in runs] == ["sparkeras-test"]
    assert runs[0].info.status == "FINISHED" and "loss" in runs[0].data.metrics


def test_mlflow_logger_without_mlflow_says_how_to_install(monkeypatch):
    import sys

    from sparkeras.callbacks import MLflowLogger

    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(ImportError, match=r'pip install "sparkeras\[mlflow\]"'):
        MLflowLogger()
