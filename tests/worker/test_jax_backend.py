"""Backend neutrality: what one backend trains, saves or sends, the other loads.

Runs under whichever backend the test process has (the main CI run:
TensorFlow; the `-m jax` run: JAX) against the other one in a subprocess
(`backend_child.py`), so both directions are covered across the two runs.
The artefacts: the `.keras` file, the fit checkpoint and the parameter
server's wire frame of the weights.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO_DIR, TESTS_DIR

pytest.importorskip("jax", reason='backend neutrality needs JAX: pip install -e ".[jax]"')

_HERE = TESTS_DIR  # the *_child.py scripts
_REPO = REPO_DIR


def _backends():
    import keras

    here = keras.backend.backend()
    return here, ("jax" if here == "tensorflow" else "tensorflow")


def _child(command, folder, backend):
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": os.pathsep.join(filter(None, [_REPO, _HERE, os.environ.get("PYTHONPATH")])),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    completed = subprocess.run(
        [sys.executable, os.path.join(_HERE, "backend_child.py"), command, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    lines = [x for x in completed.stdout.splitlines() if x.startswith("REPORT ")]
    return json.loads(lines[0][len("REPORT ") :]) if lines else None


def _assert_same_model(report, saved_under, loaded_under):
    assert (report["saved_under"], report["loaded_under"]) == (saved_under, loaded_under)
    assert report["model_difference"] < 1e-5
    assert report["wire_difference"] < 1e-5
    assert report["checkpoint_difference"] < 1e-5
    assert report["optimizer_restored"]
    assert report["optimizer_matches_keras_file"]
    assert np.isfinite(report["resumed_loss"])


def test_model_trained_under_the_other_backend_loads_and_resumes_here(tmp_path):
    from backend_child import check_artifacts

    here, other = _backends()
    _child("save", tmp_path, other)
    _assert_same_model(check_artifacts(str(tmp_path)), other, here)


@pytest.mark.spark
def test_spark_fit_here_loads_and_resumes_under_the_other_backend(spark, tmp_path):
    import pandas as pd
    from backend_child import model_and_data, save_artifacts

    from sparkeras import SparkModel

    here, other = _backends()
    model, x, y = model_and_data()
    frame = spark.createDataFrame(pd.DataFrame({"features": list(x), "label": y}))
    spark_model = SparkModel(model, num_workers=2)
    spark_model.fit(
        frame, epochs=2, batch_size=32, verbose=0, checkpoint_dir=str(tmp_path / "checkpoint")
    )
    save_artifacts(spark_model.model, x, str(tmp_path), checkpoint=False)
    _assert_same_model(_child("load", tmp_path, other), here, other)


def test_weights_and_optimizer_state_leave_a_process_as_numpy():
    from backend_child import model_and_data

    from sparkeras.common.optimizer_state import optimizer_arrays

    model, x, y = model_and_data()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    for array in [*model.get_weights(), *optimizer_arrays(model)]:
        assert type(array) is np.ndarray and array.dtype.kind in "fiub"
