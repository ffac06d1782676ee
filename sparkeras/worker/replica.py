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
    """

    def __init__(self, model, x, y, batch_size, seed):
        self.model = model
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

    def train_steps(self, first_batch, end_batch):
        """Trains batches `[first_batch, end_batch)` of the epoch's order.

        Returns:
            (means, samples): the mean loss and metrics over those samples,
            and how many samples they were ((`{}`, 0) for an empty slice).
        """
        end_batch = min(end_batch, self.num_batches)
        if end_batch <= first_batch:
            return {}, 0
        index = self._order[first_batch * self._batch_size : end_batch * self._batch_size]
        x, y = _take(self._x, index), _take(self._y, index)
        if end_batch - first_batch >= _MIN_STEPS_FOR_FIT:
            history = self.model.fit(
                x, y, batch_size=self._batch_size, epochs=1, shuffle=False, verbose=0
            )
            means = {name: values[-1] for name, values in history.history.items()}
        else:
            # train_on_batch reports one batch's metrics: weight them by size.
            totals = {}
            for start in range(0, len(index), self._batch_size):
                stop = min(start + self._batch_size, len(index))
                logs = self.model.train_on_batch(
                    _take(x, slice(start, stop)), _take(y, slice(start, stop)), return_dict=True
                )
                for name, value in logs.items():
                    totals[name] = totals.get(name, 0.0) + float(value) * (stop - start)
            means = {name: total / len(index) for name, total in totals.items()}
        return _as_floats(means), len(index)

    def evaluate(self, x, y):
        """Returns the model's metrics on `(x, y)` with the current weights."""
        logs = self.model.evaluate(x, y, batch_size=self._batch_size, verbose=0, return_dict=True)
        return _as_floats(logs)
