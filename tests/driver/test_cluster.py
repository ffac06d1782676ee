"""Training on a real Spark standalone cluster: two executors, and spark-submit."""

import json
import os
import subprocess
import sys
import time

import cluster
import numpy as np
import pytest
from helpers import dense_classifier, digits_arrays

pytestmark = pytest.mark.cluster
standalone_cluster = cluster.standalone_cluster

_EPOCHS = 5
_DRIVER_TIMEOUT_S = 400


def _run_driver(command, standalone, cwd):
    completed = subprocess.run(
        command,
        env=standalone.env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=_DRIVER_TIMEOUT_S,
    )
    errors = [line for line in completed.stderr.splitlines() if " INFO " not in line]
    assert completed.returncode == 0, completed.stdout[-3000:] + "\n".join(errors)[-5000:]
    return completed


def _app_names(standalone, timeout_s=30):
    """Names of the apps the master ran, once the last one has been marked finished."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = standalone.state()
        if not state["activeapps"] or time.monotonic() > deadline:
            return [app["name"] for app in state["completedapps"]]
        time.sleep(1)


def test_fit_runs_on_two_executors_and_matches_local_accuracy(standalone_cluster, digits, tmp_path):
    from sparkeras import SparkModel

    result_path = tmp_path / "result.json"
    script = os.path.join(cluster.REPO, "tests", "cluster_fit.py")
    _run_driver(
        [sys.executable, script, standalone_cluster.master_url, str(_EPOCHS), str(result_path)],
        standalone_cluster,
        tmp_path,
    )
    result = json.loads(result_path.read_text())

    train_df, test_df = digits
    local = SparkModel(dense_classifier(), num_workers=2)
    local.fit(train_df, epochs=_EPOCHS, batch_size=32, verbose=0)
    _, local_accuracy = local.model.evaluate(*digits_arrays(test_df), verbose=0)

    summary = result["summary"]
    assert [row["worker"] for row in summary] == [0, 1]
    assert len({row["parent_pid"] for row in summary}) == 2, summary
    assert sorted(result["executor_ids"]) == ["0", "1"], result
    assert sum(row["samples"] for row in summary) == train_df.count()
    assert result["accuracy"] > 0.9
    assert abs(result["accuracy"] - local_accuracy) <= 0.02, (result["accuracy"], local_accuracy)


def test_spark_submit_train_writes_a_model_that_predicts(standalone_cluster, digits, tmp_path):
    import keras

    train_df, test_df = digits
    data, compiled, trained = (
        tmp_path / "train.parquet",
        tmp_path / "mlp.keras",
        tmp_path / "out.keras",
    )
    train_df.write.parquet(str(data))
    dense_classifier().save(compiled)

    completed = _run_driver(
        [
            os.path.join(standalone_cluster.spark_home, "bin", "spark-submit"),
            "--master",
            standalone_cluster.master_url,
            "--conf",
            "spark.driver.host=127.0.0.1",
            "--conf",
            "spark.executor.memory=512m",
            "--conf",
            "spark.cores.max=2",
            "--conf",
            "spark.scheduler.minRegisteredResourcesRatio=1.0",
            os.path.join(cluster.REPO, "sparkeras", "submit.py"),
            "train",
            "--data",
            str(data),
            "--model",
            str(compiled),
            "--output",
            str(trained),
            "--epochs",
            "3",
            "--num-workers",
            "2",
        ],
        standalone_cluster,
        tmp_path,
    )

    assert f"Saved the trained model to {trained}" in completed.stdout
    assert "sparkeras train" in _app_names(standalone_cluster)
    x_test, y_test = digits_arrays(test_df)
    predicted = np.argmax(keras.saving.load_model(trained).predict(x_test, verbose=0), axis=1)
    assert np.mean(predicted == y_test) > 0.85
