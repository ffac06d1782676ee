"""A new user's console: the embedded session and a fit start quietly."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.spark

_SCRIPT = r"""
import sys
import sparkeras

spark = sparkeras.get_spark("local[1]")
if sys.argv[1] == "fit":
    import keras, numpy as np, pandas as pd
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    frame = spark.createDataFrame(pd.DataFrame({"features": [[0.5] * 4] * 64, "label": [1] * 64}))
    sparkeras.SparkModel(model, num_workers=1).fit(frame, epochs=1, verbose=0)
else:
    spark.range(3).count()
print("DONE", flush=True)
"""

# What a user saw on every run before the session and TensorFlow were quietened.
_NOTICES = (
    "Using Spark's default log4j profile",
    "Setting default log level",
    "NativeCodeLoader",
    "absl::InitializeLog",
    "oneDNN custom operations",
    "cpu_feature_guard",
)


def _run(action, **env):
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("TF_CPP_MIN_LOG_LEVEL", "SPARKERAS_VERBOSE")}
    environment.update(SPARK_LOCAL_IP="127.0.0.1", **env)
    return subprocess.run([sys.executable, "-c", _SCRIPT, action], capture_output=True,
                          text=True, env=environment, timeout=600, check=True)


def test_a_fit_on_the_embedded_session_prints_no_start_up_notices():
    result = _run("fit")
    assert "DONE" in result.stdout
    assert not [notice for notice in _NOTICES if notice in result.stderr], result.stderr


def test_sparkeras_verbose_brings_spark_s_notices_back():
    result = _run("start", SPARKERAS_VERBOSE="1")
    assert "Using Spark's default log4j profile" in result.stderr, result.stderr


def test_loading_a_compiled_never_trained_model_warns_nothing(tmp_path):
    import warnings

    import keras

    from sparkeras import SparkModel

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(tmp_path / "compiled.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = SparkModel.load(str(tmp_path / "compiled.keras"))
    assert loaded.model.optimizer is not None
    assert not [str(w.message) for w in caught if "optimizer" in str(w.message)], caught
