"""Child process of test_multigpu: a model on 2 CPU devices vs the serial model.

Run as `python multidevice_child.py BACKEND LOG`; prints one JSON report. The
devices must exist before the backend starts, hence a process of its own:
TensorFlow gets 2 logical CPU devices here, JAX its 2 host devices from
XLA_FLAGS=--xla_force_host_platform_device_count=2 set by the parent.
"""

import json
import os
import sys
import tempfile

backend, log_path = sys.argv[1], sys.argv[2]
os.environ["KERAS_BACKEND"] = backend
if backend == "tensorflow":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402
from shard_probe import probe_model, read_log  # noqa: E402

from sparkeras import multigpu  # noqa: E402


def build():
    return probe_model(8, 16, 3, 0.1)


rng = np.random.default_rng(0)
x = rng.normal(size=(256, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0).astype("int64")
devices = multigpu.get_available_devices()
serial = build()
parallel = multigpu.make_parallel(serial, devices)

os.environ["SPARKERAS_SHARD_LOG"] = log_path
parallel_history = parallel.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
del os.environ["SPARKERAS_SHARD_LOG"]
serial_history = serial.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)

x_odd = x[:45]  # 45 rows: not a multiple of the 2 devices
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "parallel.keras")
    parallel.save(path)
    loaded = keras.saving.load_model(path)
    loaded_difference = float(
        np.max(np.abs(loaded.predict(x_odd, verbose=0) - parallel.predict(x_odd, verbose=0)))
    )

report = {
    "devices": devices,
    "is_keras_model": isinstance(parallel, keras.Model),
    "weight_difference": max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(parallel.get_weights(), serial.get_weights(), strict=True)
    ),
    "parallel_loss": parallel_history.history["loss"],
    "serial_loss": serial_history.history["loss"],
    "parallel_evaluate": parallel.evaluate(x, y, batch_size=32, verbose=0, return_dict=True),
    "serial_evaluate": serial.evaluate(x, y, batch_size=32, verbose=0, return_dict=True),
    "predict_difference": float(
        np.max(np.abs(parallel.predict(x_odd, verbose=0) - serial.predict(x_odd, verbose=0)))
    ),
    "predict_on_batch_shape": list(np.asarray(parallel.predict_on_batch(x_odd)).shape),
    "loaded_class": type(loaded).__name__,
    "loaded_difference": loaded_difference,
    "shards": read_log(log_path),
}


def build_uncompiled():
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(3, activation="softmax")])


# keras_exp's and Keras 2's order: wrap first, compile the parallel model after
# (TensorFlow only: under JAX, compile before wrapping; docs/devices.md).
if backend == "tensorflow":
    late_serial = build_uncompiled()
    late_parallel = multigpu.make_parallel(build_uncompiled(), devices)
    for late in (late_serial, late_parallel):
        late.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        late.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    report["compile_after_difference"] = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(late_parallel.get_weights(), late_serial.get_weights(), strict=True)
    )
if backend == "jax":
    kernel = parallel.layers[1].kernel.value
    report["kernel_devices"] = len(kernel.sharding.device_set)
    report["kernel_replicated"] = bool(kernel.sharding.is_fully_replicated)
try:  # 45 rows in batches of 32: a last batch of 13, which 2 devices cannot split evenly
    parallel.fit(x[:45], y[:45], batch_size=32, epochs=1, verbose=0)
    report["odd_fit"] = "trained"
except ValueError as error:
    report["odd_fit"] = str(error)
print("REPORT " + json.dumps(report))
