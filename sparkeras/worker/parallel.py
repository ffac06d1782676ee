"""Runs one model data-parallel across the devices of its process.

Neutral module: executors use it for a replica that spans several devices,
`sparkeras.multigpu` for a model on one machine. TensorFlow mirrors the
model with `tf.distribute.MirroredStrategy`; JAX with
`keras.distribution.DataParallel`. Either way the variables are replicated
on every device, each batch is split evenly across the devices, and the
gradients are averaged, so a step equals the single-device step on the
whole batch (up to float rounding).

Batch semantics: a batch size is the global batch of the model, split across
its devices (`batch_size=64` on 2 devices: 32 rows per device per step). It
must be a multiple of the number of devices. JAX also needs every batch to
split evenly: training drops the last `rows % devices` rows of an epoch's
shuffled order (other rows each epoch), evaluation and prediction handle the
remainder exactly (see `evaluate_arrays` and `predict_arrays`).
"""

import contextlib

import numpy as np


def make_distribution(backend, devices):
    """The object that runs Keras models data-parallel on `devices`, or None for one.

    A `tf.distribute.MirroredStrategy` (TensorFlow) or a
    `keras.distribution.DataParallel` (JAX). Build, and run, the model under
    `scope(distribution)`; keep the object for the model's lifetime.

    Args:
        backend: "tensorflow" or "jax".
        devices: Device names such as `["gpu:0", "gpu:1"]` or `["cpu:0", "cpu:1"]`.

    Example:
    >>> distribution = make_distribution("tensorflow", ["cpu:0", "cpu:1"])
    >>> with scope(distribution):
    ...     model = keras.saving.load_model("m.keras")
    """
    devices = list(devices)
    if len(devices) <= 1:
        return None
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy(devices=[tf_device_name(d) for d in devices])
    if backend == "jax":
        import keras

        return keras.distribution.DataParallel(devices=devices)
    raise ValueError(
        "Data-parallel replicas need the tensorflow or jax backend. Set KERAS_BACKEND to one "
        f"of them. Received: backend={backend!r}"
    )


def scope(distribution):
    """The context that makes `distribution` current (nothing for None).

    Example:
    >>> with scope(make_distribution("jax", ["cpu:0", "cpu:1"])):
    ...     model.fit(x, y, batch_size=64)
    """
    if distribution is None:
        return contextlib.nullcontext()
    return distribution.scope()


def tf_device_name(name):
    """`"gpu:1"` as TensorFlow writes it, `"/device:GPU:1"`; other forms pass through.

    Example:
    >>> tf_device_name("cpu:0")
    '/device:CPU:0'
    """
    kind, _, index = str(name).rpartition(":")
    if "/" in str(name) or not kind or not index.isdigit():
        return str(name)
    return f"/device:{kind.upper()}:{index}"


def check_batch_size(batch_size, shards):
    """Raises unless `batch_size` splits evenly over `shards` devices.

    Example:
    >>> check_batch_size(64, 2)
    """
    if shards > 1 and batch_size % shards:
        raise ValueError(
            f"batch_size is the global batch of a replica, split evenly over its {shards} "
            f"devices: use a multiple of {shards}. Received: batch_size={batch_size}"
        )


def _rows(x):
    first = x[0] if isinstance(x, (list, tuple)) else x
    return len(first)


def _take(x, index):
    if isinstance(x, (list, tuple)):
        return [part[index] for part in x]
    return x[index]


def _repeat(x, times):
    if isinstance(x, (list, tuple)):
        return [np.concatenate([part] * times) for part in x]
    return np.concatenate([x] * times)


def _as_list(outputs):
    if isinstance(outputs, dict):
        return [np.asarray(value) for value in outputs.values()]
    if isinstance(outputs, (list, tuple)):
        return [np.asarray(value) for value in outputs]
    return [np.asarray(outputs)]


def evaluate_arrays(model, x, y, batch_size, shards=1):
    """The model's loss and metrics on `(x, y)`, on all of its `shards` devices.

    With several devices, the rows that divide evenly are evaluated at once;
    the last `rows % shards` rows are repeated `shards` times (so they split
    evenly too) and their means weighted by their own count: the result is
    the mean over every row, as on one device.

    Example:
    >>> evaluate_arrays(model, x, y, batch_size=64, shards=2)
    {'loss': 0.31, 'accuracy': 0.9}
    """
    rows = _rows(x)
    if shards <= 1 or rows % shards == 0:
        return _evaluate(model, x, y, batch_size)
    even = rows - rows % shards
    parts = []
    if even:
        parts.append(
            (_evaluate(model, _take(x, slice(0, even)), _take(y, slice(0, even)), batch_size), even)
        )
    rest_x, rest_y = _take(x, slice(even, rows)), _take(y, slice(even, rows))
    parts.append(
        (
            _evaluate(model, _repeat(rest_x, shards), _repeat(rest_y, shards), batch_size),
            rows - even,
        )
    )
    return {name: sum(logs[name] * count for logs, count in parts) / rows for name in parts[0][0]}


def _evaluate(model, x, y, batch_size):
    from sparkeras.data import keras_inputs

    logs = model.evaluate(keras_inputs(x), y, batch_size=batch_size, verbose=0, return_dict=True)
    return {name: float(value) for name, value in logs.items()}


def predict_arrays(model, x, batch_size, shards=1):
    """The model's outputs on `x`, one array per output, split over `shards` devices.

    With several devices the rows are padded (by repeating the last row) to
    a multiple of `shards` and the padding's outputs dropped; `batch_size`
    is rounded down to a multiple of `shards`.

    Example:
    >>> (probabilities,) = predict_arrays(model, x, batch_size=1024, shards=2)
    """
    rows = _rows(x)
    batch_size = max(shards, batch_size - batch_size % shards)
    padding = -rows % shards
    if padding:
        index = np.concatenate([np.arange(rows), np.full(padding, rows - 1)])
        x = _take(x, index)
    from sparkeras.data import keras_inputs

    outputs = _as_list(model.predict(keras_inputs(x), batch_size=batch_size, verbose=0))
    return [output[:rows] for output in outputs]
