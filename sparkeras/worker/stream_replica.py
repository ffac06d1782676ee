"""One Keras replica training from a streamed partition (`TrainingInput`).

Executor-side module. `StreamReplica` has the methods the training loop
uses on a `Replica` (`start_epoch`, `train_steps`, the counts), but its rows
come chunk by chunk from a `TrainingInput`, so the task never holds its
whole partition; validation is evaluated chunk by chunk from the spill file.
"""

import math

from sparkeras.worker.input_stream import row_count
from sparkeras.worker.replica import fit_rows


class StreamReplica:
    """A model trained on the rows a `TrainingInput` streams, in epoch order.

    Steps are consumed in order: `train_steps(first, end)` skips to `first`
    when it is ahead (a launch resuming within an epoch) and trains up to
    `end` or the epoch's last row.

    Example:
    >>> replica = StreamReplica(model, stream, batch_size=64)
    >>> replica.start_epoch(0)
    >>> means, samples = replica.train_steps(0, 10**12)  # the whole epoch
    """

    def __init__(self, model, stream, batch_size, shards=1):
        self.model = model
        self._stream = stream
        self._batch_size = batch_size
        self._shards = max(1, int(shards))
        self._position = 0

    @property
    def num_samples(self):
        """Training rows of the partition read so far (all, once read to its end)."""
        return self._stream.num_samples

    @property
    def num_batches(self):
        """Batches of the partition, or 0 while it is not read to its end (unknown)."""
        if not self._stream.complete:
            return 0
        return math.ceil(self.num_samples / self._batch_size)

    def start_epoch(self, epoch):
        """Starts streaming `epoch`'s rows (decoded ahead in the background)."""
        self._stream.start_epoch(epoch)
        self._position = 0

    def train_steps(self, first_batch, end_batch, progress=None):
        """Trains the epoch's batches `[first_batch, end_batch)`, as `Replica.train_steps`."""
        while self._position < first_batch:  # resuming within the epoch
            skipped = self._stream.next_rows((first_batch - self._position) * self._batch_size)
            if skipped is None:
                return {}, 0
            self._position += math.ceil(row_count(skipped[1]) / self._batch_size)
        totals, samples, steps = {}, 0, 0
        while self._position < end_batch:
            rows = self._stream.next_rows((end_batch - self._position) * self._batch_size)
            if rows is None:
                break
            means, trained = fit_rows(
                self.model, rows[0], rows[1], self._batch_size, self._shards,
                progress and _offset(progress, steps, samples, totals),
            )
            self._stream.stats.sample_memory()
            for name, value in means.items():
                totals[name] = totals.get(name, 0.0) + value * trained
            samples += trained
            chunk_steps = math.ceil(row_count(rows[1]) / self._batch_size)
            steps += chunk_steps
            self._position += chunk_steps
            if trained < row_count(rows[1]):  # the driver asked training to stop
                break
        if not samples:
            return {}, 0
        return {name: total / samples for name, total in totals.items()}, samples

    def validate(self):
        """The model's metrics on the validation rows and their count, or None without any."""
        from sparkeras.worker.parallel import evaluate_arrays

        totals, count = {}, 0
        for x, y in self._stream.validation_chunks():
            rows = row_count(y)
            for name, value in evaluate_arrays(self.model, x, y, self._batch_size,
                                               self._shards).items():
                totals[name] = totals.get(name, 0.0) + float(value) * rows
            count += rows
        if not count:
            return None
        return {name: total / count for name, total in totals.items()}, count


def _offset(progress, steps, samples, totals):
    """`progress` seen from a chunk: counts and running means over the whole slice."""
    base = dict(totals)

    def chunk_progress(chunk_steps, chunk_samples, logs):
        def means():
            current = logs() if callable(logs) else logs
            done = samples + chunk_samples
            names = set(base) | set(current or {})
            return {name: (base.get(name, 0.0)
                           + float((current or {}).get(name, 0.0)) * chunk_samples) / done
                    for name in names}

        return progress(steps + chunk_steps, samples + chunk_samples, means)

    return chunk_progress
