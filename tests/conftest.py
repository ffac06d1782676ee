"""Shared fixtures: one embedded local[2] SparkSession and the digits data for the whole run.

The test files sit in one folder per layer: ps/ (parameter server), worker/
(executor side), data/ (columns to arrays), driver/ (SparkModel, fits,
callbacks), ml/ (Spark ML stages), compat/ (the elephas layer) and cli/ (the
command and the notebook). Helper modules and *_child.py scripts stay here.
"""

import os
import sys

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# The suite's JAX subset: `KERAS_BACKEND=jax python -m pytest -m jax` (.ci/run runs
# it after the main run; files matched by name, in any folder). Every public entry
# point under the other backend: fit in every mode and frequency, evaluate,
# predict, save/load, the Spark ML stage, the streaming data path, and backend
# neutrality. Tests that start their own backend in a subprocess (test_devices,
# test_multigpu) cover JAX in the main run already.
JAX_SUBSET = (
    "test_spark_model.py",
    "test_async_modes.py",
    "test_ml.py",
    "test_replica.py",
    "test_jax_backend.py",
    "test_streaming.py",
    "test_warm_model.py",
)
# Left out of it: a minute of CrossValidator fits, which add no new entry point.
JAX_SUBSET_EXCLUDES = ("test_ml.py::test_cross_validator",)


# The Spark Connect subset: `python -m pytest -m connect` (.ci/run runs it after the
# JAX run). Its tests share one Connect session (`remote("local[2]")`), which cannot
# live in the same process as the classic `spark` fixture: a run whose -m does not
# name `connect` deselects them (pytest reports them as deselected), and a run that
# selects them must not select classic tests.


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "connect: the Spark Connect subset, run alone with -m connect (conftest.py)"
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = f"{item.path.name}::{item.name}"
        if item.path.name in JAX_SUBSET and not name.startswith(JAX_SUBSET_EXCLUDES):
            item.add_marker(pytest.mark.jax)
    if "connect" in (config.option.markexpr or ""):
        return
    connect = [item for item in items if item.get_closest_marker("connect")]
    if connect:
        config.hook.pytest_deselected(items=connect)
        items[:] = [item for item in items if not item.get_closest_marker("connect")]


@pytest.fixture(scope="session")
def spark():
    """A real local[2] SparkSession shared by the tests that ask for it."""
    import sparkeras

    session = sparkeras.get_spark(
        "local[2]",
        app_name="sparkeras-tests",
        conf={"spark.driver.host": "127.0.0.1", "spark.sql.shuffle.partitions": "4"},
    )
    assert sparkeras.session.wait_for_python_workers(session)  # job counts stay exact
    yield session
    session.stop()


@pytest.fixture(scope="session")
def digits(spark):
    """scikit-learn's digits as cached (train, test) DataFrames of the shared session."""
    from helpers import cached_digits

    return cached_digits(spark)


