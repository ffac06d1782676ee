"""A worker reuses the last fit's compiled model, and trains exactly as a fresh one would."""

import numpy as np
import pytest


def _model(learning_rate=0.01, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        # No dropout: a model loaded from bytes draws new seed states, so two fresh
        # loads of a model with dropout do not train alike either.
        [keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="hidden"),
         keras.layers.Dense(3, name="out")],
        name="warm",
    )
    model.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 3, 64)


def _train(model):
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return [np.asarray(w) for w in model.get_weights()]


@pytest.fixture(autouse=True)
def _nothing_kept():
    from sparkeras.worker import warm_model

    warm_model._kept.clear()
    yield
    warm_model._kept.clear()


def test_a_kept_model_trains_exactly_as_the_fresh_one_without_tracing_again():
    from sparkeras.common.model_io import model_from_bytes, model_to_bytes
    from sparkeras.worker import warm_model

    user_model = _model(seed=1)
    first = model_to_bytes(user_model)
    model, reused = warm_model.take(first)
    assert not reused
    _train(model)  # trains: its weights and optimizer state move, its step is traced
    traced = model.train_function
    warm_model.keep(model, first)

    # The same model (a refit), with other weights: the kept one has trained since.
    rng = np.random.default_rng(2)
    user_model.set_weights([rng.normal(size=w.shape).astype("float32")
                            for w in user_model.get_weights()])
    second = model_to_bytes(user_model)
    warm, reused = warm_model.take(second)
    assert reused and warm is model
    assert warm.optimizer.iterations.numpy() == 0
    expected = _train(model_from_bytes(second))
    trained = _train(warm)
    assert warm.train_function is traced
    for got, want in zip(trained, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_a_kept_model_takes_the_new_fits_optimizer_state():
    from sparkeras.common.model_io import model_to_bytes
    from sparkeras.common.optimizer_state import optimizer_arrays
    from sparkeras.worker import warm_model

    user_model = _model()
    data = model_to_bytes(user_model)
    model, _ = warm_model.take(data)
    _train(model)
    warm_model.keep(model, data)
    _train(user_model)  # the driver's model trained: its optimizer state travels in its bytes
    warm, reused = warm_model.take(model_to_bytes(user_model))
    assert reused
    for got, want in zip(optimizer_arrays(warm), optimizer_arrays(user_model), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("change", ["learning rate", "architecture", "custom objects",
                                    "several devices"])
def test_another_model_or_an_unsafe_case_is_not_reused(change):
    import keras

    from sparkeras.common.model_io import model_to_bytes
    from sparkeras.worker import warm_model

    user_model = _model()
    data = model_to_bytes(user_model)
    model, _ = warm_model.take(data)
    _train(model)
    warm_model.keep(model, data)
    options = {}
    if change == "learning rate":
        user_model.optimizer.learning_rate = 0.02  # a variable: the configuration changes
        data = model_to_bytes(user_model)
    elif change == "architecture":
        other = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="out")],
                                 name="warm")
        other.compile("adam", "sparse_categorical_crossentropy")
        data = model_to_bytes(other)
    elif change == "custom objects":
        options = {"custom_objects": {"Extra": keras.layers.Dense}}
    else:
        options = {"reusable": False}
    taken, reused = warm_model.take(data, **options)
    assert not reused and taken is not model


def test_the_same_model_saved_twice_has_one_key_and_a_rebuilt_one_another():
    from sparkeras.common.model_io import model_to_bytes
    from sparkeras.worker import warm_model

    model = _model()
    assert warm_model._key(model_to_bytes(model)) == warm_model._key(model_to_bytes(model))
    # Built again, it has new generated names (input layer, optimizer): another model.
    assert warm_model._key(model_to_bytes(_model())) != warm_model._key(model_to_bytes(model))
