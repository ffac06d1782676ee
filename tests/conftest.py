"""Shared fixtures: one embedded local[2] SparkSession for the whole run."""

import os
import sys
import time

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def spark():
    """A real local[2] SparkSession shared by the tests that ask for it."""
    import sparkeras

    session = sparkeras.get_spark(
        "local[2]",
        app_name="sparkeras-tests",
        conf={"spark.driver.host": "127.0.0.1", "spark.sql.shuffle.partitions": "4"},
    )
    _wait_for_warm_up(session)
    yield session
    session.stop()


def _wait_for_warm_up(session, timeout_s=180):
    """Waits for get_spark's background warm-up job, so job counts stay exact."""
    tracker = session.sparkContext.statusTracker()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if tracker.getJobIdsForGroup(None) and not tracker.getActiveJobsIds():
            return
        time.sleep(0.2)
