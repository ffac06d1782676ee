"""One Keras replica training on the numpy arrays of its partition.

Executor-side module. The replica keeps its compiled model, and so its
optimizer state, for the whole fit; rounds only swap the weights.
"""

import math

import numpy as np

# A round of at least this many steps trains through `model.fit`, whose
# per-call set-up cost is paid back over the steps; shorter rounds step with
# `train_on_batch`, which has no set-up cost.
_MIN_STEPS_FOR_FIT = 32


def _take(arrays, index):
    if isinstance(arrays, list):
        return [array[index] for array in arrays]
    return arrays[index]


def _as_floats(logs):
    return {name: float(value) for name, value in logs.items()}


class Replica:
    """A model and its local data, trained a slice of steps at a time.

    Example:
    >>> replica = Replica(model, x, y, batch_size=64, seed=7)
    >>> replica.start_epoch(0)
    >>> means, samples = replica.train_steps(0, replica.num_batches)

    With `shards` > 1 the model was built under a data-parallel scope
    (`sparkeras.worker.parallel`): `batch_size` is the global batch, split
    evenly over the devices, every round trains through `model.fit` (which
    splits batches; `train_on_batch` would not), and an epoch's order drops
    its last `num_samples % shards` rows so every batch splits evenly.
    """

    def __init__(self, model, x, y, batch_size, seed, shards=1):
        self.model = model
        self._shards = max(1, int(shards))
        self._x = x
        self._y = y
        self._batch_size = batch_size
        self._seed = seed
        self.num_samples = len(y[0] if isinstance(y, list) else y)
        self.num_batches = math.ceil(self.num_samples / batch_size)
        self._order = np.arange(self.num_samples)

    def start_epoch(self, epoch):
        """Reshuffles the local samples, the same way for a given epoch."""
        rng = np.random.default_rng([self._seed, epoch])
        self._order = rng.permutation(self.num_samples)
        if self._shards > 1:
            self._order = self._order[: self.num_samples - self.num_samples % self._shards]

    def train_steps(self, first_batch, end_batch, progress=None):
        """Trains batches `[first_batch, end_batch)` of the epoch's order.

        Args:
            first_batch: First batch of the slice, in the epoch's order.
            end_batch: Batch after the slice's last.
            progress: Optional `progress(batches, samples, logs)` called after
                each batch with the counts so far in the slice and the running
                means (or a function returning them); returning True ends the
                slice early (the driver asked training to stop).

        Returns:
            (means, samples): the mean loss and metrics over the samples
            trained, and how many they were ((`{}`, 0) for an empty slice).
        """
        end_batch = min(end_batch, self.num_batches)
        if end_batch <= first_batch:
            return {}, 0
        index = self._order[first_batch * self._batch_size : end_batch * self._batch_size]
        return fit_rows(self.model, _take(self._x, index), _take(self._y, index),
                        self._batch_size, self._shards, progress)

    def evaluate(self, x, y):
        """Returns the model's metrics on `(x, y)` with the current weights."""
        from sparkeras.worker.parallel import evaluate_arrays

        return evaluate_arrays(self.model, x, y, self._batch_size, self._shards)


def fit_rows(model, x, y, batch_size, shards=1, progress=None):
    """Trains `model` one pass over `(x, y)`, in order, `batch_size` rows a step.

    Many steps (or several devices) train through `model.fit`, few through
    `train_on_batch`, which has no set-up cost.

    Args:
        model: The compiled Keras model.
        x: Input array, or list of arrays, of the rows to train.
        y: Target array, or list of arrays.
        batch_size: Rows per step (the global batch with several devices).
        shards: Devices the model spans.
        progress: As in `Replica.train_steps`.

    Returns:
        (means, samples), as `Replica.train_steps`.

    Example:
    >>> means, samples = fit_rows(model, x[:640], y[:640], batch_size=64)
    """
    rows = len(y[0] if isinstance(y, list) else y)
    if not rows:
        return {}, 0
    if shards > 1 or math.ceil(rows / batch_size) >= _MIN_STEPS_FOR_FIT:
        callbacks = [] if progress is None else [_progress_callback(progress, rows, batch_size)]
        from sparkeras.data import keras_inputs  # text inputs as tf.string tensors

        history = model.fit(
            keras_inputs(x), y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
            callbacks=callbacks,
        )
        means = {name: values[-1] for name, values in history.history.items()}
        if callbacks and callbacks[0].samples < rows:
            return _as_floats(means), callbacks[0].samples
        return _as_floats(means), rows
    # train_on_batch reports one batch's metrics: weight them by size.
    totals = {}
    for start in range(0, rows, batch_size):
        stop = min(start + batch_size, rows)
        logs = model.train_on_batch(
            _take(x, slice(start, stop)), _take(y, slice(start, stop)), return_dict=True
        )
        for name, value in logs.items():
            totals[name] = totals.get(name, 0.0) + float(value) * (stop - start)
        if progress is not None and progress(
            start // batch_size + 1, stop,
            lambda stop=stop: {n: t / stop for n, t in totals.items()},
        ):
            rows = stop
            break
    return _as_floats({name: total / rows for name, total in totals.items()}), rows


def _progress_callback(progress, rows, batch_size):
    """A Keras callback passing `model.fit`'s batches to `progress`; stops the fit on request."""
    import keras

    class _Progress(keras.callbacks.Callback):
        samples = rows

        def on_train_batch_end(self, batch, logs=None):
            samples = min((batch + 1) * batch_size, rows)
            if progress(batch + 1, samples, logs or {}):
                self.samples = samples
                self.model.stop_training = True

    return _Progress()
