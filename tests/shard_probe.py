"""A pass-through Keras layer that logs where each batch ran.

Test helper. While training it logs how the batch is split over devices:
under TensorFlow, per step and replica, the replica's id and its rows (a
`tf.py_function` inside the replica's graph); under JAX the number of devices
the batch is sharded over and the rows of one shard
(`jax.debug.inspect_array_sharding`, at compile time). While predicting it
logs the process' CUDA_VISIBLE_DEVICES. Lines go to the file named by
SPARKERAS_SHARD_LOG, so Spark executors can log too.
"""

import json
import os

import keras


def _log(record):
    path = os.environ.get("SPARKERAS_SHARD_LOG")
    if path:
        record.update(pid=os.getpid(), cuda=os.environ.get("CUDA_VISIBLE_DEVICES"))
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def read_log(path):
    """The records logged so far, as dicts."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@keras.saving.register_keras_serializable(package="sparkeras_tests")
class ShardProbe(keras.layers.Layer):
    """Returns its input unchanged; logs the shard it got."""

    def call(self, inputs, training=None):
        backend = keras.backend.backend()
        if backend == "tensorflow":
            self._log_tensorflow(inputs, bool(training))
        elif backend == "jax":
            self._log_jax(inputs, bool(training))
        return inputs

    @staticmethod
    def _log_tensorflow(inputs, training):
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        replica = 0 if context is None else context.replica_id_in_sync_group

        def record(replica_id, rows):
            phase = "train" if training else "infer"
            _log(
                {
                    "backend": "tensorflow",
                    "phase": phase,
                    "replica": int(replica_id),
                    "rows": int(rows),
                }
            )
            return 0

        tf.py_function(record, [replica, tf.shape(inputs)[0]], tf.int32)

    @staticmethod
    def _log_jax(inputs, training):
        import jax

        def record(sharding):
            shape = sharding.shard_shape(inputs.shape)
            _log(
                {
                    "backend": "jax",
                    "phase": "train",
                    "devices": len(sharding.device_set),
                    "rows": int(shape[0]),
                    "batch": int(inputs.shape[0]),
                }
            )

        try:
            if training:
                jax.debug.inspect_array_sharding(inputs, callback=record)
            else:
                jax.debug.callback(lambda: _log({"backend": "jax", "phase": "infer"}))
        except Exception:  # symbolic tracing while the model is built: nothing ran
            pass


def probe_model(inputs, hidden, classes, learning_rate):
    """A compiled softmax classifier (seed 0) with a `ShardProbe` after its input."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((inputs,)),
            ShardProbe(),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.SGD(learning_rate), "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
