"""Keeps a fit's compiled model in the Python worker for the next fit of the same model.

Executor-side module. Keras traces (and under JAX compiles) a model's
training step the first time it trains: 0.6 s for the benchmark's MLP under
TensorFlow on this project's 2-vCPU machine, paid by every task of every fit
when each task rebuilt its model from bytes. Spark reuses its Python workers,
so a task that ends well hands its model back (`keep`), and the next fit of
the same model takes it over (`take`): every variable of the new fit's model
(weights, seed states, optimizer state) is copied into it, so it trains
exactly as the freshly loaded model would, on the step already traced.

"The same model" means the same `.keras` configuration: architecture, layer
names, compile settings and optimizer configuration (so refitting one
`SparkModel`, or a `KerasEstimator` across a parameter grid, reuses; a model
built anew, with new layer names, does not). Only single-device replicas
without `custom_objects` are kept: a custom class may be redefined between
fits under the same name. One model is kept per process.
"""

import io
import json
import threading
import zipfile

_kept = {}
_lock = threading.Lock()


def take(data, custom_objects=None, reusable=True):
    """The compiled model of `data` (`.keras` bytes): the kept one when it matches.

    Args:
        data: The fit's model as `.keras` bytes.
        custom_objects: The fit's custom objects (a model with them is never reused).
        reusable: False for a replica that spans several devices.

    Returns:
        (model, reused): the model to train, and whether it is a kept one
        (now holding every variable of `data`'s model).

    Example:
    >>> model, reused = take(model_broadcast.value)
    >>> ...  # train
    >>> keep(model, model_broadcast.value)
    """
    from sparkeras.common.model_io import model_from_bytes

    fresh = model_from_bytes(data, custom_objects)
    if custom_objects or not reusable:
        return fresh, False
    with _lock:
        kept = _kept.pop(_key(data), None)  # in use until kept again
    if kept is not None and _copy_state(fresh, kept):
        return kept, True
    return fresh, False


def keep(model, data, custom_objects=None, reusable=True):
    """Keeps `model`, trained from `data`, for the next fit of the same model.

    Example:
    >>> keep(model, model_broadcast.value)
    """
    if custom_objects or not reusable:
        return
    with _lock:
        _kept.clear()
        _kept[_key(data)] = model


def _key(data):
    """The model's `.keras` configuration, without the ids of objects in the saving process."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        config = json.loads(archive.read("config.json"))
    ids = {}

    def normalised(value):
        if isinstance(value, dict):
            return {
                name: ids.setdefault(item, len(ids)) if name == "shared_object_id"
                else normalised(item)
                for name, item in value.items()
            }
        if isinstance(value, list):
            return [normalised(item) for item in value]
        return value

    import keras

    return keras.backend.backend(), json.dumps(normalised(config), sort_keys=True)


def _copy_state(source, target):
    """Copies every variable of `source` into `target`; False if their layouts differ."""
    import keras

    if len(source.variables) != len(target.variables):
        return False
    pairs = list(zip(source.variables, target.variables, strict=True))
    source_optimizer, target_optimizer = source.optimizer, target.optimizer
    if (source_optimizer is None) != (target_optimizer is None):
        return False
    if source_optimizer is not None:
        # Built now, a fresh optimizer holds exactly its initial state (as its first step would).
        for optimizer, model in ((source_optimizer, source), (target_optimizer, target)):
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
        if len(source_optimizer.variables) != len(target_optimizer.variables):
            return False
        pairs += zip(source_optimizer.variables, target_optimizer.variables, strict=True)
    if any(tuple(s.shape) != tuple(t.shape) or s.dtype != t.dtype for s, t in pairs):
        return False
    for source_variable, target_variable in pairs:
        target_variable.assign(keras.ops.convert_to_numpy(source_variable))
    return True
