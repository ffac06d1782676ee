"""Moves a Keras model between processes as the bytes of a `.keras` file.

Neutral module: the driver serialises, executors deserialise and cache.
"""

import os
import tempfile
import threading
import warnings

_CACHE_SIZE = 2
_cache = {}
_cache_lock = threading.Lock()


def model_to_bytes(model):
    """Returns the bytes of `model` saved in the `.keras` format.

    Example:
    >>> data = model_to_bytes(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    """
    with tempfile.TemporaryDirectory(prefix="sparkeras-") as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        with open(path, "rb") as handle:
            return handle.read()


def model_from_bytes(data, custom_objects=None):
    """Rebuilds a compiled Keras model from `.keras` bytes.

    Example:
    >>> model = model_from_bytes(model_to_bytes(model))
    """
    with tempfile.TemporaryDirectory(prefix="sparkeras-") as folder:
        path = os.path.join(folder, "model.keras")
        with open(path, "wb") as handle:
            handle.write(data)
        return load_model_file(path, custom_objects)


_UNBUILT_OPTIMIZER_WARNING = "Skipping variable loading for optimizer"


def load_model_file(path, custom_objects=None):
    """Loads a `.keras` file, compiled, without a false optimizer warning.

    A model saved before its optimizer was built (compiled, never trained)
    loads with a freshly built optimizer and Keras warns that it skipped the
    saved optimizer's variables: nothing is lost then, so that warning is
    dropped. It is kept when the saved optimizer had trained (its state is
    really missing).

    Example:
    >>> model = load_model_file("compiled.keras")
    """
    import keras

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.saving.load_model(path, custom_objects=custom_objects, compile=True)
    optimizer = getattr(model, "optimizer", None)
    never_trained = optimizer is None or int(keras.ops.convert_to_numpy(optimizer.iterations)) == 0
    for warning in caught:
        if never_trained and _UNBUILT_OPTIMIZER_WARNING in str(warning.message):
            continue
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)
    return model


def cached_model(key, load):
    """Returns the model cached under `key` in this process, loading it once.

    Inference tasks reuse one model per Python worker instead of rebuilding it
    for every partition. Only the last few models are kept.

    Example:
    >>> model = cached_model("fit-1234", lambda: model_from_bytes(data))
    """
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        model = load()
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = model
        return model
