"""sparkeras.pruning: mask arithmetic, the Keras callbacks, strip/report, distributed fits."""

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import REPO_DIR, TESTS_DIR, dense_classifier

from sparkeras.pruning import DNS, magnitude, report, strip
from sparkeras.pruning.masks import (
    draws_update,
    polynomial_sparsity,
    ramp_scale,
    round_draw,
    thresholds,
    update_mask,
    update_probability,
)
from sparkeras.pruning.surgery import Surgery

HERE = TESTS_DIR  # the *_child.py scripts


# --- mask arithmetic, by hand ------------------------------------------------------------


def test_thresholds_by_hand():
    # |W| = [1, 1, 3, 3]: mu = 2, sigma = 1; c = 0.5 gives 2.5, so a = 2.25, b = 2.75.
    a, b = thresholds(np.array([1.0, -1.0, 3.0, -3.0]), 0.5)
    assert (a, b) == pytest.approx((2.25, 2.75))
    # A negative mu + c * sigma clips to 0: nothing is pruned.
    assert thresholds(np.array([1.0, 3.0]), -5.0) == (0.0, 0.0)


def test_update_mask_prunes_splices_and_keeps_the_band():
    a, b = 2.25, 2.75
    first = update_mask(np.ones(4), np.array([1.0, -1.0, 3.0, -3.0]), a, b)
    assert first.tolist() == [0, 0, 1, 1]
    # 2.8 >= b grows back; 2.5 (pruned) and -2.3 (kept) lie in [a, b) and keep their state.
    second = update_mask(first, np.array([2.8, -2.5, 3.0, -2.3]), a, b)
    assert second.tolist() == [1, 0, 1, 1]
    assert update_mask(second, np.array([2.8, -2.5, 3.0, -2.2]), a, b).tolist() == [1, 0, 1, 0]


def test_update_probability_and_iter_stop():
    assert update_probability(0, 1e-4, 1.0) == 1.0
    assert update_probability(10_000, 1e-4, 1.0) == pytest.approx(0.5)
    assert update_probability(10_000, 1e-4, 2.0) == pytest.approx(0.25)
    assert draws_update(0.49, 10_000, 1e-4, 1.0, iter_stop=20_000)
    assert not draws_update(0.51, 10_000, 1e-4, 1.0, iter_stop=20_000)
    assert not draws_update(0.0, 20_000, 1e-4, 1.0, iter_stop=20_000)
    assert round_draw(3, 7) == round_draw(3, 7) != round_draw(3, 8)


def test_ramp_raises_the_thresholds_step_by_step():
    assert [ramp_scale(i, 4) for i in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert ramp_scale(0, 0) == 1.0
    # |W| = [1, 2, 3, 4] with c = 0: full a = 2.25, b = 2.75. ramp 0.5 of iter_stop 8 is
    # 4 steps: a = 0.5625, 1.125, 1.6875, then 2.25.
    config = {**DNS(c_rate=0.0, iter_stop=8, ramp=0.5).get_config(), "gamma": 0.0}
    surgery = Surgery(config, [(0, "dense", "dense")])
    weights = [np.array([1.0, -2.0, 3.0, -4.0])]
    surgery.start(weights)
    masks = []
    for iteration in range(4):
        surgery.update(weights, 0.0, iteration)
        masks.append(surgery.masks[0].tolist())
    assert masks == [[1, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1]]
    assert surgery.limits[0] == pytest.approx((2.25, 2.75))  # the full thresholds are kept


def test_a_wholly_pruned_layer_is_reported_once(caplog):
    import logging

    surgery = Surgery(DNS(c_rate=5.0, ramp=0).get_config(), [(0, "dense_9", "dense")])
    weights = [np.array([0.1, -0.2, 0.3, -4.0])]
    surgery.start(weights)
    with caplog.at_level(logging.WARNING, logger="sparkeras"):
        surgery.update(weights, 0.0, 0)
        surgery.update(weights, 0.0, 1)
    assert not surgery.masks[0].any()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "DNS pruned every weight of layer 'dense_9'" in messages[0]


def test_polynomial_schedule():
    assert polynomial_sparsity(5, 0.9, 10, 110) == 0.0
    assert polynomial_sparsity(60, 0.9, 10, 110) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    assert polynomial_sparsity(500, 0.9, 10, 110) == pytest.approx(0.9)


def _one_kernel_model(kernel):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, use_bias=False)])
    model.set_weights([np.array(kernel, "float32").reshape(4, 1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return model


@pytest.mark.parametrize("iter_stop, mask, kernel", [
    # After the step the pruned weights' dense values are 2.88 >= b: spliced back.
    (10, [1, 1, 1, 1], [2.88, 2.88, 4.88, 4.88]),
    # iter_stop=1: no update after the first step; the dense 2.88 stays hidden.
    (1, [0, 0, 1, 1], [0.0, 0.0, 4.88, 4.88]),
])
def test_callback_splices_a_weight_that_grew_back(iter_stop, mask, kernel):
    # Thresholds from |W| = [1, 1, 3, 3] with c = 0.5: a = 2.25, b = 2.75, mask [0, 0, 1, 1].
    model = _one_kernel_model([1.0, 1.0, 3.0, 3.0])
    pruning = DNS(c_rate=0.5, gamma=0.0, iter_stop=iter_stop, ramp=0)
    # One step at the masked weights [0, 0, 3, 3]: prediction 6, target 100, so the MSE
    # gradient is 2 * (6 - 100) = -188 for every entry; SGD(0.01) adds 1.88 to all of W.
    model.fit(np.ones((1, 4), "float32"), np.array([[100.0]], "float32"), epochs=1,
              batch_size=1, verbose=0, callbacks=[pruning])
    assert pruning.surgery.limits[0] == pytest.approx((2.25, 2.75))
    np.testing.assert_allclose(pruning.dense[0].ravel(), [2.88, 2.88, 4.88, 4.88], rtol=1e-5)
    assert pruning.surgery.masks[0].ravel().tolist() == mask
    np.testing.assert_allclose(model.get_weights()[0].ravel(), kernel, rtol=1e-5)


def test_surgery_state_round_trip():
    surgery = Surgery(DNS().get_config(), [(0, "dense", "dense")])
    weights = [np.array([[1.0, -1.0], [3.0, -3.0]], "float32")]
    surgery.start(weights)
    surgery.update(weights, 0.0, 0)
    copy = Surgery.from_plain(*surgery.to_plain())
    assert copy.limits == surgery.limits and copy.kernels == surgery.kernels
    np.testing.assert_array_equal(copy.masks[0], surgery.masks[0])
    assert copy.apply(weights)[0].dtype == np.float32


# --- the callbacks in plain Keras -------------------------------------------------------


@pytest.fixture(scope="module")
def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return train_test_split((x / 16.0).astype("float32"), y, test_size=0.25, random_state=0)


def _lenet_300_100(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(300, activation="relu"),
        keras.layers.Dense(100, activation="relu"), keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_dns_compresses_the_digits_mlp_and_keeps_its_accuracy(digits_split):
    x_train, x_test, y_train, y_test = digits_split
    dense = _lenet_300_100()
    dense.fit(x_train, y_train, epochs=12, batch_size=32, verbose=0)
    dense_accuracy = dense.evaluate(x_test, y_test, verbose=0)[1]
    pruned = _lenet_300_100()
    pruned.fit(x_train, y_train, epochs=6, batch_size=32, verbose=0)
    pruned.optimizer.learning_rate.assign(5e-3)
    pruning = DNS(c_rate=1.5, iter_stop=130)
    pruned.fit(x_train, y_train, epochs=6, batch_size=32, verbose=0, callbacks=[pruning])
    result = report(pruned)
    assert result["compression"] >= 4, result
    assert pruned.evaluate(x_test, y_test, verbose=0)[1] >= dense_accuracy - 0.04
    # The model holds W * T: exactly the masked entries are zero.
    for (index, _, _), mask in zip(pruning.surgery.kernels, pruning.surgery.masks, strict=True):
        assert np.array_equal(pruned.get_weights()[index] != 0, mask.astype(bool))


def test_dns_state_continues_in_a_second_fit(digits_split):
    x_train, _, y_train, _ = digits_split
    model = dense_classifier()
    pruning = DNS(c_rate=1.0)
    model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0, callbacks=[pruning])
    limits, steps = list(pruning.surgery.limits), pruning.surgery.iteration
    info, arrays = pruning.get_state()
    restored = DNS(c_rate=1.0).set_state(json.loads(json.dumps(info)), arrays)
    model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0, callbacks=[restored])
    assert restored.surgery.limits == limits  # thresholds from when pruning began
    assert restored.surgery.iteration == 2 * steps


def test_magnitude_reaches_its_final_sparsity(digits_split):
    x_train, _, y_train, _ = digits_split
    model = dense_classifier()
    model.fit(x_train, y_train, epochs=2, batch_size=64, verbose=0,
              callbacks=[magnitude(final_sparsity=0.8, begin_step=0, end_step=20, frequency=5)])
    for row in report(model)["layers"].values():
        assert row["pruned_fraction"] == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_dns_callback_on_each_backend(backend):
    env = {**os.environ, "KERAS_BACKEND": backend,
           "PYTHONPATH": os.pathsep.join([HERE, REPO_DIR,
                                          os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, os.path.join(HERE, "pruning_child.py")], env=env,
                         capture_output=True, text=True, timeout=600, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["backend"] == backend
    assert result["consistent"]
    assert result["compression"] > 2
    assert result["iteration"] == 6 * 16  # every batch went through the callback
    assert all(total > 0 for total in result["hidden_dense"])  # pruned weights kept dense values
    assert result["accuracy"] > result["accuracy_before"]


# --- report and strip ---------------------------------------------------------------


def test_report_counts_the_zeros():
    model = dense_classifier(inputs=4, classes=2, hidden=5)
    weights = model.get_weights()
    weights[0][:2] = 0  # 10 of 20 kernel entries
    weights[2][:] = 0
    weights[2][0, 0] = 1.0  # 1 of 10 kept
    model.set_weights(weights)
    result = report(model)
    first, second = result["layers"].values()
    assert (first["kept"], first["total"], first["pruned_fraction"]) == (10, 20, 0.5)
    assert (second["kept"], second["total"]) == (1, 10)
    assert result["compression"] == pytest.approx(30 / 11)
    table = str(result)
    assert "compression: 2.7x" in table and "50.00%" in table


def test_strip_saves_a_plain_keras_model(tmp_path, digits_split):
    x_train, x_test, y_train, _ = digits_split
    model = dense_classifier()
    model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0,
              callbacks=[DNS(c_rate=1.0)])
    plain = strip(model)
    assert plain is not model and plain.compiled
    path = str(tmp_path / "pruned.keras")
    plain.save(path)
    np.save(tmp_path / "x.npy", x_test[:20])
    code = (
        "import sys, numpy as np, keras\n"
        f"m = keras.saving.load_model({path!r})\n"
        f"np.save({str(tmp_path / 'p.npy')!r}, m.predict(np.load({str(tmp_path / 'x.npy')!r}),"
        " verbose=0))\n"
        "assert not any(name.startswith('sparkeras') for name in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300, cwd=tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), model.predict(x_test[:20], verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert report(plain)["compression"] == report(model)["compression"] > 1


# --- bad input ----------------------------------------------------------------------


def test_bad_settings_are_refused():
    with pytest.raises(ValueError,
                       match=r"out of range: c_rate must be a number >= 0.*Received: c_rate=-1"):
        DNS(c_rate=-1)
    with pytest.raises(ValueError, match=r"ramp must be a number in \[0, 1\]. Received: ramp=2"):
        DNS(ramp=2)
    with pytest.raises(ValueError, match="final_sparsity must be a number in"):
        magnitude(final_sparsity=1.5)
    with pytest.raises(ValueError, match="layers must be a list of layer names"):
        DNS(layers="dense")


def test_a_model_with_nothing_to_prune_is_refused():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Normalization()])
    with pytest.raises(ValueError, match="The model has no prunable layer"):
        report(model)
    model = dense_classifier(inputs=4)
    with pytest.raises(ValueError, match="is not a prunable layer"):
        model.fit(np.zeros((4, 4)), np.zeros(4), verbose=0, callbacks=[DNS(layers=["nope"])])


def test_spark_model_refuses_asynchronous_pruning_and_other_callbacks():
    from sparkeras import SparkModel

    with pytest.raises(ValueError, match="Pruning needs mode='synchronous'"):
        SparkModel(dense_classifier(), mode="asynchronous", pruning=DNS())
    with pytest.raises(TypeError, match="pruning must be a sparkeras.pruning.DNS"):
        SparkModel(dense_classifier(), pruning=magnitude())
    flat = keras.Sequential([keras.Input((4,)), keras.layers.Normalization()])
    with pytest.raises(ValueError, match="The model has no prunable layer"):
        SparkModel(flat, pruning=DNS())


# --- distributed ---------------------------------------------------------------------


def _workers_agree(tmp_path, epoch):
    """Both workers recorded identical masks for `epoch`; returns the first's record."""
    records = _records(str(tmp_path), epoch)
    assert len(records) == 2, sorted(os.listdir(tmp_path))
    first, second = records.values()
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name])
    return first


def _records(folder, epoch):
    return {name: np.load(os.path.join(folder, name))
            for name in sorted(os.listdir(folder)) if name.endswith(f"-epoch{epoch}.npz")}


def test_distributed_masks_agree_on_every_worker_and_the_driver(spark, digits, tmp_path,
                                                                  monkeypatch):
    from sparkeras import SparkModel

    monkeypatch.setenv("SPARKERAS_PRUNING_RECORD", str(tmp_path))
    train_df, test_df = digits
    pruning = DNS(c_rate=1.0, iter_stop=40)  # the thresholds ramp up over 20 steps
    sm = SparkModel(dense_classifier(), num_workers=2, frequency=5, pruning=pruning)
    sm.fit(train_df, epochs=3, batch_size=32, verbose=0, checkpoint_dir=str(tmp_path / "ck"))
    for epoch in range(3):
        _workers_agree(tmp_path, epoch)
    # The driver's masks are the workers' last ones, and its model holds W * T.
    last = next(iter(_records(str(tmp_path), 2).values()))
    weights = sm.model.get_weights()
    for i, ((index, _, _), mask) in enumerate(zip(pruning.surgery.kernels,
                                                  pruning.surgery.masks, strict=True)):
        np.testing.assert_array_equal(mask, last[f"arr_{i}"])
        assert np.array_equal(weights[index] != 0, mask.astype(bool))
    assert 2 < report(sm.model)["compression"] < 100
    assert sm.evaluate(test_df)["accuracy"] > 0.3  # pruned from its random start
    # The checkpoint keeps the masks and the schedule's position.
    from sparkeras.checkpoint import load_checkpoint

    info, masks = load_checkpoint(str(tmp_path / "ck"))["pruning"]
    assert info["iteration"] == pruning.surgery.iteration > 0
    for saved, mask in zip(masks, pruning.surgery.masks, strict=True):
        np.testing.assert_array_equal(saved, mask)

    # A new driver resumes with the checkpoint's thresholds, masks and position.
    resumed = DNS(c_rate=1.0, iter_stop=40)
    sm2 = SparkModel(dense_classifier(seed=5), num_workers=2, frequency=5, pruning=resumed)
    sm2.fit(train_df, epochs=4, batch_size=32, verbose=0, checkpoint_dir=str(tmp_path / "ck"),
            resume=True)
    assert resumed.surgery.limits == [tuple(limit) for limit in info["limits"]]
    assert resumed.surgery.iteration == info["iteration"] * 4 // 3
    records = _records(str(tmp_path), 3)
    first, second = records.values()
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name])


def test_keras_estimator_prunes(spark, digits):
    from sparkeras import KerasEstimator

    frame, _ = digits
    estimator = KerasEstimator(model=dense_classifier(), epochs=2, numWorkers=2,
                               pruning=DNS(c_rate=1.0, ramp=0))
    assert estimator.getPruning().c_rate == 1.0
    with pytest.raises(TypeError, match="pruning must be a sparkeras.pruning.DNS"):
        KerasEstimator(model=dense_classifier(), pruning="dns")
    fitted = estimator.fit(frame)
    assert report(fitted.getModel())["compression"] > 2
    with pytest.raises(ValueError, match="Pruning needs mode='synchronous'"):
        KerasEstimator(model=dense_classifier(), mode="hogwild", pruning=DNS()).fit(frame)


class _KillWorkerMidEpoch(keras.callbacks.Callback):
    """Kills worker 1's Python process at the first progress report inside epoch 2 or later."""

    def __init__(self, spark_model, steps_per_epoch):
        super().__init__()
        self.spark_model = spark_model
        self.steps_per_epoch = steps_per_epoch
        self.epoch = None
        self.killed = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch >= 1 and self.killed is None and batch + 1 < self.steps_per_epoch:
            self.killed = self.spark_model.workers[1]["pid"]
            os.kill(self.killed, signal.SIGKILL)


def test_a_relaunched_fit_keeps_the_masks_and_the_schedule(spark, digits, tmp_path,
                                                             monkeypatch, caplog):
    import logging

    from sparkeras import SparkModel, progress

    monkeypatch.setattr(progress, "REPORT_INTERVAL_S", 0.05)
    monkeypatch.setenv("SPARKERAS_PRUNING_RECORD", str(tmp_path))
    train_df, test_df = digits
    train = train_df.repartition(2).cache()
    rows = train.rdd.glom().map(len).collect()
    steps = -(-max(rows) // 32)  # frequency=1: one round per step, rounds set by the larger
    pruning = DNS(c_rate=1.0, ramp=0)
    sm = SparkModel(dense_classifier(), num_workers=2, frequency=1, pruning=pruning)
    killer = _KillWorkerMidEpoch(sm, steps)
    with caplog.at_level(logging.WARNING, logger="sparkeras"):
        sm.fit(train, epochs=4, batch_size=32, verbose=0, callbacks=[killer])
    assert killer.killed is not None, "no progress report arrived within epochs 2 to 4"
    assert any("Relaunching; resuming at epoch" in r.getMessage() for r in caplog.records)
    assert all(row["launch"] >= 1 and row["pid"] != killer.killed
               for row in sm.training_summary)
    # Every epoch's masks agree on both workers (the relaunched ones from their epoch on) ...
    for epoch in range(4):
        records = _records(str(tmp_path), epoch)
        assert len(records) == 2, (epoch, sorted(os.listdir(tmp_path)))
        first, second = records.values()
        for name in first.files:
            np.testing.assert_array_equal(first[name], second[name])
    # ... and with the driver's, whose model holds W * T.
    weights = sm.model.get_weights()
    for i, ((index, _, _), mask) in enumerate(zip(pruning.surgery.kernels,
                                                  pruning.surgery.masks, strict=True)):
        np.testing.assert_array_equal(mask, first[f"arr_{i}"])
        assert np.array_equal(weights[index] != 0, mask.astype(bool))
    # The schedule went on from the last completed round: one position per step, none twice.
    assert pruning.surgery.iteration == 4 * steps
    assert report(sm.model)["compression"] > 2
    assert sm.evaluate(test_df)["accuracy"] > 0.3


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_devices_per_task_prune_with_the_same_masks(tmp_path, backend):
    import pyspark

    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "SPARK_HOME": os.path.dirname(pyspark.__file__), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "SPARKERAS_PRUNING_RECORD": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [os.path.dirname(HERE), HERE,
                                                       os.environ.get("PYTHONPATH")]))}
    env.pop("XLA_FLAGS", None)
    path = tmp_path / "result.json"
    child = subprocess.Popen([sys.executable, os.path.join(HERE, "pruning_child.py"),
                              "multidevice", str(path)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = child.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # its Spark JVM goes with it
        output, _ = child.communicate()
    assert child.returncode == 0, output[-4000:]
    result = json.loads(path.read_text())
    assert [row["devices"] for row in result["summary"]] == [["cpu:0", "cpu:1"]] * 2
    for epoch in range(2):
        first = _workers_agree(tmp_path, epoch)
    driver = np.load(tmp_path / "driver-masks.npz")
    for name in driver.files:
        np.testing.assert_array_equal(driver[name], first[name])
    assert result["masked_exactly"]
    assert result["compression"] > 2
    assert result["accuracy"] > 0.3
