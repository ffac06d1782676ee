"""Fault injection shared by the fault-tolerance and streaming tests.

Test helper (driver side of the tests): a learnable task of generated rows,
and a Keras callback that kills a worker's Python process mid-epoch.
"""

import os
import signal

import numpy as np

FEATURES = 64


def teacher_task(rows, seed):
    """`rows` random feature rows (seeded) and their labels from a fixed linear teacher."""
    teacher = np.random.default_rng(99).normal(size=(FEATURES, 10))
    x = np.random.default_rng(seed).normal(size=(rows, FEATURES)).astype("float32")
    return x, np.argmax(x @ teacher, axis=1)


class KillWorkerMidEpoch:
    """Kills worker 1's Python process at the first global progress report of epoch 2.

    Reports come every 0.05 s (the test lowers the interval), so the kill lands
    early in the epoch however fast the machine is; `killed_at` is the global
    step count of that report.
    """

    def __init__(self, spark_model, steps_per_epoch):
        import keras

        outer = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                outer.epoch = epoch

            def on_train_batch_end(self, batch, logs=None):
                if outer.epoch == 1 and outer.killed is None and batch + 1 < steps_per_epoch:
                    outer.killed = outer.spark_model.workers[1]["pid"]
                    outer.killed_at = batch + 1
                    os.kill(outer.killed, signal.SIGKILL)

        self.spark_model = spark_model
        self.epoch = None
        self.killed = None
        self.killed_at = None
        self.callback = Callback()
