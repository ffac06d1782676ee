"""The replica reports epoch means, not the last batch's metrics."""

import numpy as np
import pytest


def _frozen_model():
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


@pytest.mark.parametrize("steps", [4, 40])  # train_on_batch path, then model.fit path
def test_round_means_equal_evaluate_when_weights_do_not_move(steps):
    from sparkeras.worker.replica import Replica

    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * 16, 4)).astype("float32")
    y = rng.integers(0, 3, steps * 16)
    model = _frozen_model()
    replica = Replica(model, x, y, batch_size=16, seed=1)
    replica.start_epoch(0)
    means, samples = replica.train_steps(0, steps)
    expected = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert samples == len(y)
    assert means["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
    assert means["loss"] == pytest.approx(expected["loss"], rel=1e-5)


class _Warnings:
    def __init__(self):
        self.kinds = []

    def add_warning(self, kind, message):
        self.kinds.append(kind)


@pytest.mark.parametrize("waited, trained, warned", [
    (3.0, 4.0, True),    # 43 % of the epoch waiting for input
    (1.0, 10.0, False),  # under a quarter
    (0.04, 0.01, False),  # a few rows: most of it waiting, but under a second
])
def test_input_bound_warning_needs_a_quarter_of_the_epoch_and_a_second(waited, trained, warned):
    from sparkeras.worker.train import _warn_if_input_bound

    reporter = _Warnings()
    _warn_if_input_bound(reporter, 0, (0.0, 0.0), (waited, trained))
    assert reporter.kinds == (["InputBound"] if warned else [])
