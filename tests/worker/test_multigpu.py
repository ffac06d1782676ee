"""sparkeras.multigpu and the data-parallel helpers, on CPU devices.

Two devices need a process of their own (they are fixed when the backend
starts): `multidevice_child.py` gives TensorFlow 2 logical CPU devices and
JAX 2 XLA host devices, trains a `make_parallel` copy beside the serial
model, and reports.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO_DIR, TESTS_DIR

_HERE = TESTS_DIR  # the *_child.py scripts
_REPO = REPO_DIR


def _child(backend, tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [_REPO, _HERE, os.environ.get("PYTHONPATH")])),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    env.pop("SPARKERAS_SHARD_LOG", None)
    completed = subprocess.run(
        [
            sys.executable,
            os.path.join(_HERE, "multidevice_child.py"),
            backend,
            str(tmp_path / "shards.jsonl"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    line = next(x for x in completed.stdout.splitlines() if x.startswith("REPORT "))
    return json.loads(line[len("REPORT ") :])


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_make_parallel_splits_batches_and_matches_the_serial_model(tmp_path, backend):
    if backend == "jax":
        pytest.importorskip("jax", reason='the JAX backend needs pip install -e ".[jax]"')
    report = _child(backend, tmp_path)
    assert report["devices"] == ["cpu:0", "cpu:1"]
    assert report["is_keras_model"]
    # The same two epochs on one device and on two: same numbers up to rounding.
    assert report["weight_difference"] < 1e-5
    if backend == "tensorflow":  # compiled after wrapping (keras_exp's order), the same
        assert report["compile_after_difference"] < 1e-5
    assert report["parallel_loss"] == pytest.approx(report["serial_loss"], rel=1e-5)
    for name, value in report["serial_evaluate"].items():
        assert report["parallel_evaluate"][name] == pytest.approx(value, abs=1e-5), name
    assert report["predict_difference"] < 1e-5
    # 45 rows (odd) in, 45 rows out: not one copy per device.
    assert report["predict_on_batch_shape"] == [45, 3]
    # Saved from the parallel copy, it loads as the plain serial model.
    assert report["loaded_class"] == "Sequential"
    assert report["loaded_difference"] < 1e-6
    # Each device got its half of every 32-row batch.
    shards = [r for r in report["shards"] if r["phase"] == "train"]
    if backend == "tensorflow":
        steps = 2 * 256 // 32
        assert sorted((r["replica"], r["rows"]) for r in shards) == (
            [(0, 16)] * steps + [(1, 16)] * steps
        )
    else:
        assert {(r["devices"], r["rows"], r["batch"]) for r in shards} == {(2, 16, 32)}
        assert report["kernel_devices"] == 2 and report["kernel_replicated"]
    if backend == "tensorflow":  # MirroredStrategy splits an odd last batch unevenly
        assert report["odd_fit"] == "trained"
    else:  # JAX cannot: make_parallel's fit says so before JAX fails obscurely
        assert "split evenly over the 2 devices" in report["odd_fit"]


def test_available_devices_are_named_as_keras_distribution_names_them():
    from sparkeras.multigpu import get_available_devices

    devices = get_available_devices()
    assert devices and all(name.split(":")[0] in ("cpu", "gpu") for name in devices)
    assert get_available_devices("cpu")[0] == "cpu:0"
    with pytest.raises(ValueError, match="device_type"):
        get_available_devices("tpu")


def test_make_parallel_on_one_device_returns_the_model_and_refuses_unknown_devices():
    from helpers import dense_classifier

    from sparkeras.multigpu import make_parallel

    model = dense_classifier(inputs=4, classes=2)
    assert make_parallel(model, ["cpu:0"]) is model
    with pytest.raises(ValueError, match="get_available_devices"):
        make_parallel(model, ["gpu:7", "gpu:8"])


def test_sharded_evaluate_and_predict_give_the_serial_numbers_for_odd_row_counts():
    from helpers import dense_classifier

    from sparkeras.worker.parallel import evaluate_arrays, predict_arrays

    model = dense_classifier(inputs=4, classes=3)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(45, 4)).astype("float32")
    y = rng.integers(0, 3, 45)
    expected = model.evaluate(x, y, batch_size=45, verbose=0, return_dict=True)
    for shards in (2, 4):  # the remainder is tiled `shards` times, weighted by its rows
        result = evaluate_arrays(model, x, y, batch_size=8, shards=shards)
        for name, value in expected.items():
            assert result[name] == pytest.approx(float(value), rel=1e-5), (shards, name)
    (predicted,) = predict_arrays(model, x, batch_size=7, shards=2)
    np.testing.assert_allclose(predicted, model.predict(x, verbose=0), rtol=1e-5, atol=1e-7)


def test_device_names_and_batch_sizes():
    from sparkeras.worker.parallel import check_batch_size, make_distribution, tf_device_name

    assert tf_device_name("gpu:1") == "/device:GPU:1"
    assert tf_device_name("/device:CPU:0") == "/device:CPU:0"
    assert make_distribution("tensorflow", ["cpu:0"]) is None
    check_batch_size(64, 2)
    with pytest.raises(ValueError, match="multiple of 4"):
        check_batch_size(66, 4)
    with pytest.raises(ValueError, match="tensorflow or jax"):
        make_distribution("torch", ["cpu:0", "cpu:1"])
