"""Data-parallel Keras on the devices of one machine, without Spark.

`make_parallel` returns a copy of a model that trains, evaluates and
predicts data-parallel on several devices of this process: TensorFlow mirrors
it with `tf.distribute.MirroredStrategy`, JAX with
`keras.distribution.DataParallel`. Variables are replicated on every device,
each batch is split evenly across them and the gradients are averaged, so it
computes what the serial model computes, faster where the devices are
really separate (GPUs). It saves as the serial model does (`.keras`), and
the file loads anywhere without the devices.

Batch semantics: `batch_size` is the global batch, split across the devices
(64 on 2 GPUs: 32 rows per GPU per step); keep it a multiple of the number
of devices. Under JAX every batch must split evenly, the last one included:
`fit` and `evaluate` need a number of rows whose last batch divides by the
number of devices (they raise otherwise), `predict` pads and trims itself.

On CPU-only machines the same code runs on logical devices: TensorFlow's
`tf.config.set_logical_device_configuration`, or JAX's
`XLA_FLAGS=--xla_force_host_platform_device_count=N`, set before the backend
starts (bench/devices.py measures both).

Example:
>>> from sparkeras import multigpu
>>> devices = multigpu.get_available_devices()      # ['gpu:0', 'gpu:1']
>>> parallel = multigpu.make_parallel(model, devices)
>>> parallel.fit(x, y, batch_size=128, epochs=5)
>>> parallel.save("model.keras")                     # loads as the serial model
"""

import functools

import numpy as np

__all__ = ["get_available_devices", "make_parallel"]


def get_available_devices(device_type=None):
    """Names of the devices the Keras backend of this process can use.

    Args:
        device_type: "gpu" or "cpu"; None: the GPUs if there are any, else the
            CPU devices (logical ones included).

    Returns:
        A list such as `["gpu:0", "gpu:1"]` or `["cpu:0"]`, in the form
        `make_parallel` and `keras.distribution` take.

    Example:
    >>> from sparkeras.multigpu import get_available_devices
    >>> get_available_devices()
    ['cpu:0']
    """
    import keras

    from sparkeras.worker.devices import local_devices

    backend = keras.backend.backend()
    if device_type is None:
        return local_devices(backend)
    kind = str(device_type).lower()
    if kind not in ("cpu", "gpu"):
        raise ValueError(f'device_type must be "cpu", "gpu" or None. Received: {device_type!r}')
    if backend == "tensorflow":
        import tensorflow as tf

        found = tf.config.list_logical_devices(kind.upper())
        return [f"{kind}:{device.name.rsplit(':', 1)[-1]}" for device in found]
    if backend == "jax":
        import jax

        return [f"{d.platform}:{d.id}" for d in jax.devices() if d.platform == kind]
    return ["cpu:0"] if kind == "cpu" else []


def make_parallel(model, devices=None, custom_objects=None):
    """Returns a copy of `model` that runs data-parallel on `devices`.

    The copy has the model's architecture, weights, compile settings and
    optimizer state; training it leaves `model` unchanged. Compile `model`
    before wrapping it; under TensorFlow compiling the returned copy
    afterwards (the order of keras_exp's and Keras 2's `multi_gpu_model`)
    works too, under JAX it does not yet. With one device
    (or none found) `model` itself is returned.

    Args:
        model: A built Keras model (compiled if you will train or evaluate it).
        devices: Device names, e.g. `["gpu:0", "gpu:1"]`; None for every
            device of `get_available_devices()`.
        custom_objects: Custom layers or losses needed to rebuild the model.

    Returns:
        A `keras.Model` whose `fit`, `evaluate`, `predict` and `*_on_batch`
        split each batch over the devices.

    Raises:
        ValueError: An unknown device or an unsupported backend.

    Example:
    >>> parallel = make_parallel(model, ["cpu:0", "cpu:1"])
    >>> parallel.fit(x, y, batch_size=64, epochs=2)
    >>> parallel.evaluate(x, y, batch_size=64, return_dict=True)
    """
    import keras

    from sparkeras.common.model_io import model_from_bytes, model_to_bytes
    from sparkeras.worker import parallel

    backend = keras.backend.backend()
    available = get_available_devices()
    devices = list(available if devices is None else devices)
    unknown = [d for d in devices if _short_name(d) not in _all_devices()]
    if unknown:
        raise ValueError(
            f"make_parallel got devices this process does not have; it has {available} "
            f"(see get_available_devices()). Received: devices={devices}"
        )
    if len(devices) <= 1:
        return model
    distribution = parallel.make_distribution(backend, [_short_name(d) for d in devices])
    data = model_to_bytes(model)
    with parallel.scope(distribution):
        copy = model_from_bytes(data, custom_objects)
    _route_methods(copy, backend, distribution, len(devices))
    return copy


def _short_name(name):
    """`"/device:GPU:1"` or `"gpu:1"` as `"gpu:1"`."""
    kind, _, index = str(name).rpartition(":")
    return f"{kind.rsplit(':', 1)[-1].rsplit('/', 1)[-1].lower()}:{index}"


def _all_devices():
    return {*get_available_devices("cpu"), *get_available_devices("gpu")}


def _route_methods(model, backend, distribution, shards):
    """Makes the copy's entry points split their batches over the devices.

    TensorFlow: a model built under the strategy keeps it, except
    `predict_on_batch`, which would run the whole batch on every device and
    return one copy of the outputs per device: it goes through `predict`.
    JAX: the `DataParallel` distribution must be current while the model
    runs, so every entry point enters its scope; `predict` pads the rows to
    a multiple of the devices.
    """
    from sparkeras.worker import parallel

    def in_scope(method):
        @functools.wraps(method)
        def run(*args, **kwargs):
            with parallel.scope(distribution):
                return method(*args, **kwargs)

        return run

    if backend == "tensorflow":
        # Compiled after wrapping (keras_exp's and Keras 2's order), the optimizer must
        # be created under the strategy as well.
        _set(model, "compile", in_scope(model.compile))
    if backend == "jax":
        predict_in_scope = in_scope(model.predict)

        @functools.wraps(model.predict)
        def predict(x, batch_size=None, **kwargs):
            return _padded_predict(predict_in_scope, x, batch_size, shards, **kwargs)

        _set(model, "predict", predict)
        for name in ("fit", "evaluate"):
            _set(model, name, _checked(in_scope(getattr(model, name)), shards))
        for name in ("train_on_batch", "test_on_batch"):
            _set(model, name, in_scope(getattr(model, name)))

    def predict_on_batch(x):
        return _padded_predict(model.predict, x, None, shards)

    _set(model, "predict_on_batch", predict_on_batch)


def _set(model, name, function):
    object.__setattr__(model, name, function)


def _rows(x):
    import keras

    leaves = keras.tree.flatten(x)
    return len(leaves[0]) if leaves and hasattr(leaves[0], "__len__") else None


def _padded_predict(predict, x, batch_size, shards, **kwargs):
    """`predict` on `x` padded to a multiple of `shards` rows, padding dropped."""
    import keras

    rows = _rows(x)
    if rows is None:  # a dataset or generator: batches are the caller's
        return predict(x, batch_size=batch_size, **kwargs)
    batch_size = rows if batch_size is None and kwargs.get("steps") is None else batch_size
    batch_size = max(shards, (batch_size or 32) - (batch_size or 32) % shards)
    padding = -rows % shards
    if padding:
        index = np.concatenate([np.arange(rows), np.full(padding, rows - 1)])
        x = keras.tree.map_structure(lambda array: np.asarray(array)[index], x)
    kwargs.setdefault("verbose", 0)
    outputs = predict(x, batch_size=batch_size, **kwargs)
    return keras.tree.map_structure(lambda array: array[:rows], outputs)


def _checked(method, shards):
    """`fit`/`evaluate` that refuse, clearly, a batch JAX cannot split evenly."""

    @functools.wraps(method)
    def run(x=None, y=None, batch_size=None, *args, **kwargs):
        rows = _rows(x)
        size = batch_size or 32
        if rows is not None and kwargs.get("validation_split") is None:
            last = rows % size or size
            if size % shards or last % shards:
                raise ValueError(
                    f"Under JAX every batch must split evenly over the {shards} devices, the "
                    f"last one too: {rows} rows in batches of {size} end with a batch of "
                    f"{last}. Use a batch_size and a number of rows that are multiples of "
                    f"{shards}. Received: batch_size={batch_size}, rows={rows}"
                )
        return method(x, y, batch_size, *args, **kwargs)

    return run
