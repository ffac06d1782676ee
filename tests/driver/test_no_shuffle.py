"""The training rows reach the workers without a shuffle; the gang start replaces the barrier.

Shuffle bytes are read from Spark's own monitoring REST API (the live UI of
the test session), for the stages of the jobs each fit ran.
"""

import contextlib
import json
import os
import socket
import threading
import urllib.request

import pytest
from helpers import TESTS_DIR, dense_classifier

pytestmark = pytest.mark.spark


def _rest(spark, path):
    context = spark.sparkContext
    url = f"{context.uiWebUrl}/api/v1/applications/{context.applicationId}/{path}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def _fit_jobs(spark, before):
    """The jobs of fits (job group sparkeras-fit-*) with an id above `before`."""
    return [job for job in _rest(spark, "jobs")
            if job["jobId"] > before and (job.get("jobGroup") or "").startswith("sparkeras-fit-")]


def _last_job_id(spark):
    return max((job["jobId"] for job in _rest(spark, "jobs")), default=-1)


def _shuffle_of_fit(spark, fit):
    """(stages, shuffle bytes written + read) of the jobs `fit()` runs in its job group."""
    before = _last_job_id(spark)
    fit()
    spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty()  # the UI has seen every event
    assert all(job["status"] == "SUCCEEDED" for job in _fit_jobs(spark, before))
    stages = [stage for job in _fit_jobs(spark, before) for stage_id in job["stageIds"]
              for stage in _rest(spark, f"stages/{stage_id}")
              if stage["status"] != "SKIPPED"]
    moved = sum(stage["shuffleWriteBytes"] + stage["shuffleReadBytes"] for stage in stages)
    return len(stages), moved


@pytest.fixture(scope="module")
def six_partitions(digits):
    train, validation = digits
    train = train.repartition(6).cache()
    assert train.count() > 0 and train.rdd.getNumPartitions() == 6
    return train, validation


def _model(**settings):
    from sparkeras import SparkModel

    return SparkModel(dense_classifier(), num_workers=2, **settings)


def test_a_six_partition_frame_trains_on_two_workers_with_no_exchange(spark, six_partitions):
    train, _ = six_partitions
    spark_model = _model()
    stages, moved = _shuffle_of_fit(
        spark, lambda: spark_model.fit(train, epochs=2, batch_size=32, verbose=0))
    assert (stages, moved) == (1, 0)
    summary = spark_model.training_summary
    assert sorted(row["worker"] for row in summary) == [0, 1]
    assert sum(row["samples"] for row in summary) == train.count()  # every row, once


def test_validation_rows_do_not_shuffle_the_training_rows(spark, six_partitions):
    train, validation = six_partitions
    spark_model = _model()
    history = []
    stages, moved = _shuffle_of_fit(spark, lambda: history.append(spark_model.fit(
        train, epochs=1, batch_size=32, validation_data=validation, verbose=0)))
    assert (stages, moved) == (1, 0)
    assert 0.0 < history[0].history["val_accuracy"][0] <= 1.0
    summary = spark_model.training_summary
    assert sum(row["samples"] for row in summary) == train.count()
    assert sum(row["validation_samples"] for row in summary) == validation.count()


def test_the_shuffle_is_measured_where_a_frame_has_fewer_partitions_than_workers(spark, digits):
    train, _ = digits
    one = train.coalesce(1).cache()
    assert one.count() > 0
    stages, moved = _shuffle_of_fit(
        spark, lambda: _model().fit(one, epochs=1, batch_size=32, verbose=0))
    assert stages == 2 and moved > 0  # one partition cannot be split without an exchange


def test_tasks_that_cannot_all_start_end_the_fit_with_a_clear_error(spark, six_partitions):
    """Another job holds one of the two slots: the fit's first task waits, then the fit stops."""
    from sparkeras import TrainingConfig

    # The blocker task holds its slot until the test closes the connection it opened.
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(120)
    port = listener.getsockname()[1]

    def hold_a_slot(batches):
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=300) as connection:
            connection.recv(1)  # returns when the test closes its end
        yield from batches

    def run_blocker():
        with contextlib.suppress(Exception):  # the test has ended the wait either way
            spark.range(1, numPartitions=1).mapInArrow(hold_a_slot, "id long").collect()

    blocker = threading.Thread(target=run_blocker, daemon=True)
    blocker.start()
    connection = None
    try:
        connection, _ = listener.accept()  # the blocker task runs: it holds one slot
        train, _ = six_partitions
        spark_model = _model(config=TrainingConfig(start_timeout_s=3))
        with pytest.raises(TimeoutError, match=r"Only 1 of the fit's 2 training tasks started "
                                               r"within 3 s.*fewer free task slots"):
            spark_model.fit(train, epochs=1, batch_size=32, verbose=0)
    finally:
        if connection is not None:
            connection.close()
        listener.close()
        blocker.join(120)


def test_a_session_that_speculates_is_refused_before_any_job():
    from types import SimpleNamespace

    from sparkeras.slots import check_no_speculation

    speculating = SimpleNamespace(conf={"spark.speculation": "true"})
    with pytest.raises(ValueError, match=r"spark.speculation=false .* "
                                         r"Received: spark.speculation=true"):
        check_no_speculation(speculating)
    check_no_speculation(SimpleNamespace(conf={}))


@pytest.mark.parametrize("value", [0, -1.5, "60", True])
def test_a_start_timeout_must_be_a_positive_number(value):
    from sparkeras import TrainingConfig

    with pytest.raises(ValueError, match=rf"start_timeout_s must be a positive number\. "
                                         rf"Received: start_timeout_s={value!r}"):
        TrainingConfig(start_timeout_s=value)


_RETRYING_DRIVER = r"""
import logging, os, signal, sys
import numpy as np, pandas as pd, keras
sys.path.insert(0, sys.argv[1])
import sparkeras
from helpers import TESTS_DIR, dense_classifier

logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
spark = sparkeras.get_spark("local[2,2]")  # Spark may retry a failed task once
x = np.random.default_rng(0).normal(size=(8000, 64)).astype("float32")
frame = pd.DataFrame({"features": list(x), "label": (x[:, 0] > 0).astype("int64")})
train = spark.createDataFrame(frame).repartition(4).cache()
train.count()
sm = sparkeras.SparkModel(dense_classifier(inputs=64, classes=2), num_workers=2)

class KillWorker1(keras.callbacks.Callback):
    # Epoch 1 ended and every worker waits for the driver's decision: worker 1 dies now.
    killed = None
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1 and KillWorker1.killed is None:
            KillWorker1.killed = sm.workers[1]["pid"]
            os.kill(KillWorker1.killed, signal.SIGKILL)

history = sm.fit(train, epochs=3, batch_size=64, callbacks=[KillWorker1()], verbose=0)
print("EPOCHS", len(history.history["loss"]), flush=True)
print("LAUNCHES", sorted({row["launch"] for row in sm.training_summary}), flush=True)
print("KILLED_GONE", all(row["pid"] != KillWorker1.killed for row in sm.training_summary))
"""


def test_a_task_spark_retries_makes_the_driver_relaunch_every_worker():
    """Where Spark retries a failed task alone, the fit relaunches all workers, as a barrier did."""
    import subprocess
    import sys

    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1")
    done = subprocess.run([sys.executable, "-c", _RETRYING_DRIVER, TESTS_DIR],
                          capture_output=True, text=True, env=env, timeout=600)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "Spark retried worker 1's task (attempt 2) after its previous attempt failed" in out
    assert "resuming at epoch 2" in out
    assert "EPOCHS 3" in out and "LAUNCHES [1]" in out and "KILLED_GONE True" in out
