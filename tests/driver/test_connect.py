"""The public API on a Spark Connect session: `SparkSession.builder.remote("local[2]")`.

Run alone, `python -m pytest -m connect` (a classic session cannot share the
process; see conftest.py). The session's Connect server runs in this process,
on sc://localhost:15002; the parameter server runs in the client, here too.
"""

import logging
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import cached_digits, dense_classifier, digits_arrays

pytestmark = pytest.mark.connect


@pytest.fixture(scope="module")
def connect():
    import sparkeras

    session = sparkeras.get_spark(remote="local[2]",
                                  conf={"spark.sql.shuffle.partitions": "4"})
    assert sparkeras.session_access.is_connect(session)
    assert sparkeras.session.wait_for_python_workers(session)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def digits(connect):
    """The digits frames of the Connect session (the classic `digits` cannot be used here)."""
    return cached_digits(connect)


def test_session_reads_slots_and_master_from_conf_only(connect):
    from sparkeras import session_access
    from sparkeras.slots import task_slots

    assert task_slots(connect)[:2] == (2, 1)
    conf, master = session_access.conf_and_master(connect)
    assert master == "local[2]" and conf.get("spark.task.cpus", "1") == "1"
    assert session_access.spark_context(connect) is None
    assert session_access.num_partitions(connect.range(4)) is None


@pytest.mark.parametrize(
    "mode, frequency", [("synchronous", "epoch"), ("asynchronous", "batch"), ("hogwild", 10)]
)
def test_fit_in_every_mode_with_validation_and_a_callback(digits, mode, frequency):
    import keras

    from sparkeras import SparkModel

    train_df, test_df = digits
    seen = []
    callback = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
    spark_model = SparkModel(dense_classifier(), mode=mode, frequency=frequency, num_workers=2)
    history = spark_model.fit(train_df, epochs=3, batch_size=32, validation_data=test_df,
                              callbacks=[callback], verbose=0)
    assert seen == [0, 1, 2]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(history.history[key]) == 3, key
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.75, history.history
    summary = spark_model.training_summary
    assert [row["worker"] for row in summary] == [0, 1]
    assert sum(row["samples"] for row in summary) == train_df.count()
    assert sum(row["validation_samples"] for row in summary) == test_df.count()


@pytest.fixture(scope="module")
def trained(digits):
    from sparkeras import SparkModel

    spark_model = SparkModel(dense_classifier(), num_workers=2)
    spark_model.fit(digits[0], epochs=4, batch_size=32, verbose=0)
    return spark_model


def test_sync_fit_matches_single_process_keras(digits, trained):
    train_df, test_df = digits
    baseline = dense_classifier()
    baseline.fit(*digits_arrays(train_df), epochs=4, batch_size=32, verbose=0)
    x_test, y_test = digits_arrays(test_df)
    _, accuracy = trained.model.evaluate(x_test, y_test, verbose=0)
    _, baseline_accuracy = baseline.evaluate(x_test, y_test, verbose=0)
    assert abs(accuracy - baseline_accuracy) <= 0.03, (accuracy, baseline_accuracy)


def test_evaluate_equals_keras_evaluate(digits, trained):
    x_test, y_test = digits_arrays(digits[1])
    expected = trained.model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    metrics = trained.evaluate(digits[1])
    assert metrics.keys() == expected.keys()
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-4), name


def test_predict_keeps_every_column_and_row(connect, digits, trained):
    from pyspark.sql import functions

    frame = digits[1].withColumn("row_id", functions.monotonically_increasing_id())
    frame = frame.withColumn("note", functions.concat(functions.lit("r"), "row_id"))
    scored = trained.predict(frame)
    assert scored.columns == [*frame.columns, "probability", "prediction"]
    result = scored.toPandas()
    source = frame.toPandas()
    assert len(result) == len(source)
    assert result["row_id"].tolist() == source["row_id"].tolist()
    assert result["note"].tolist() == source["note"].tolist()
    expected = trained.model.predict(np.stack(source["features"]).astype("float32"), verbose=0)
    np.testing.assert_allclose(np.stack(result["probability"]), expected, atol=1e-5)
    np.testing.assert_array_equal(result["prediction"], np.argmax(expected, axis=1))


def test_a_model_beyond_the_inline_limit_travels_as_an_artifact(connect, digits, monkeypatch):
    from sparkeras import SparkModel, session_access
    from sparkeras.worker.shipped import ArtifactBytes

    monkeypatch.setattr(session_access, "INLINE_LIMIT_BYTES", 1024)
    assert isinstance(session_access.ship_bytes(connect, b"x" * 2048, "model"), ArtifactBytes)
    spark_model = SparkModel(dense_classifier(), num_workers=2)
    history = spark_model.fit(digits[0], epochs=1, batch_size=32, verbose=0)
    assert len(history.history["loss"]) == 1
    assert spark_model.predict(digits[1]).count() == digits[1].count()


def test_pipeline_with_vector_assembler_saves_and_loads(connect, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.feature import VectorAssembler
    from sklearn.datasets import load_iris

    from sparkeras import KerasEstimator, KerasTransformer, SparkModel

    data = load_iris()
    names = ["a", "b", "c", "d"]
    frame = pd.DataFrame(data.data, columns=names)
    frame["label"] = data.target
    iris = connect.createDataFrame(frame).cache()
    estimator = KerasEstimator(model=dense_classifier(inputs=4, classes=3, lr=0.05, hidden=16),
                               epochs=15, batchSize=16, numWorkers=2)
    pipeline = Pipeline(stages=[VectorAssembler(inputCols=names, outputCol="features"),
                                estimator])
    fitted = pipeline.fit(iris)
    assert isinstance(fitted.stages[-1], KerasTransformer)
    scored = fitted.transform(iris).select("label", "prediction").toPandas()
    assert (scored["label"] == scored["prediction"]).mean() > 0.8
    path = str(tmp_path / "pipeline")
    fitted.write().overwrite().save(path)
    fitted.write().overwrite().save(path)  # overwrite through the Connect server
    assert os.path.isfile(os.path.join(path, "stages", f"1_{fitted.stages[-1].uid}",
                                       "model.keras"))
    reloaded = PipelineModel.load(path).transform(iris).select("prediction").toPandas()
    assert reloaded["prediction"].tolist() == scored["prediction"].tolist()
    pipeline.write().overwrite().save(str(tmp_path / "unfitted"))
    assert Pipeline.load(str(tmp_path / "unfitted")).getStages()[-1].getEpochs() == 15
    model_path = str(tmp_path / "m.keras")
    SparkModel(fitted.stages[-1].getModel()).save(model_path)
    assert SparkModel.load(model_path).model.count_params() == estimator.getModel().count_params()


def test_model_copy_to_a_path_with_a_scheme_is_refused(connect):
    from sparkeras.ml.persistence import _write_bytes

    with pytest.raises(ValueError, match="Cannot copy the .keras file to the Spark Connect"):
        _write_bytes(connect, "s3a://bucket/stage/model.keras", b"PK")


def _cli(*arguments):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(),
                                                        os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "sparkeras.cli", *arguments],
                          capture_output=True, text=True, env=env, timeout=600)


def test_cli_train_evaluate_predict_with_remote(connect, digits, tmp_path):
    import json

    data = str(tmp_path / "digits.parquet")
    digits[0].withColumn("row", digits[0].label * 0).write.parquet(data)
    compiled = str(tmp_path / "compiled.keras")
    dense_classifier().save(compiled)
    remote = f"sc://{connect.client._builder.endpoint}"
    trained = str(tmp_path / "trained.keras")
    run = _cli("train", "--remote", remote, "--data", data, "--model", compiled, "--output",
               trained, "--epochs", "2", "--num-workers", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Epoch 2/2" in run.stdout and os.path.isfile(trained)
    run = _cli("evaluate", "--remote", remote, "--data", data, "--model", trained)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1])["accuracy"] > 0.7
    scored = str(tmp_path / "scored.parquet")
    run = _cli("predict", "--remote", remote, "--data", data, "--model", trained,
               "--output", scored)
    assert run.returncode == 0, run.stderr[-3000:]
    result = connect.read.parquet(scored)
    assert result.count() == digits[0].count()
    assert result.columns == ["features", "label", "row", "probability", "prediction"]
    bad = _cli("train", "--remote", remote, "--master", "local[2]", "--data", data,
               "--model", compiled, "--output", trained)
    assert bad.returncode == 2 and "not allowed with argument" in bad.stderr


def test_killed_worker_resumes_from_the_last_round(connect, caplog, monkeypatch):
    import keras

    from sparkeras import SparkModel, progress

    monkeypatch.setattr(progress, "REPORT_INTERVAL_S", 0.05)
    rows, batch = 8000, 32
    x = np.random.default_rng(0).normal(size=(rows, 64)).astype("float32")
    y = np.argmax(x @ np.random.default_rng(9).normal(size=(64, 10)), axis=1)
    train = connect.createDataFrame(pd.DataFrame({"features": list(x), "label": y}))
    train = train.repartition(2).cache()
    spark_model = SparkModel(dense_classifier(lr=0.003), num_workers=2)
    killed = []

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, step, logs=None):
            if self.epoch == 1 and not killed and step + 1 < rows // batch:
                killed.append(spark_model.workers[1]["pid"])
                os.kill(killed[0], signal.SIGKILL)

    with caplog.at_level(logging.WARNING, logger="sparkeras"):
        history = spark_model.fit(train, epochs=3, batch_size=batch, callbacks=[Kill()],
                                  verbose=0)
    assert killed, "no progress report arrived during epoch 2"
    assert len(history.history["loss"]) == 3
    resumes = [r.getMessage() for r in caplog.records if "resuming at epoch" in r.getMessage()]
    assert resumes and "resuming at epoch 2" in resumes[0], resumes
    assert all(row["launch"] == 1 for row in spark_model.training_summary)
    assert all(row["pid"] != killed[0] for row in spark_model.training_summary)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_unreachable_server_fails_fast_naming_the_setting(digits):
    from sparkeras import SparkModel, TrainingConfig

    # The server listens on 127.0.0.1; the tasks are sent to 127.0.0.2, where nothing does.
    config = TrainingConfig(server_host="127.0.0.1", server_advertised_host="127.0.0.2")
    spark_model = SparkModel(dense_classifier(), num_workers=2, config=config)
    with pytest.raises(ConnectionError, match=r"cannot reach the parameter server") as info:
        spark_model.fit(digits[0], epochs=1, verbose=0)
    assert "TrainingConfig(server_host=...)" in str(info.value)
    assert "Received: server_host='127.0.0.2'" in str(info.value)
    assert spark_model.workers == {}  # no task registered, and none was relaunched
