"""Streaming training input: spill file, shuffle buffer and prefetch thread.

Executor-side module (numpy and pyarrow only, no Keras). A `TrainingInput`
reads a partition's Arrow batches once: during the first epoch each batch is
appended to a local Arrow IPC file (under Spark's local directories) as it
arrives and its rows go through a bounded shuffle buffer to training; later
epochs read that file memory-mapped, in a permuted batch order, through the
same buffer. A background thread decodes and shuffles ahead of training, so
a task holds about `shuffle_buffer` rows plus the prefetched chunks, never
its whole partition. The spill files are removed by `close()`; files left by
a killed process are removed by the next `TrainingInput` on that machine.

Example:
>>> stream = TrainingInput(batches, spec, batch_size=64, seed=7, shuffle_buffer=10_000)
>>> stream.start_epoch(0)
>>> while (rows := stream.next_rows(640)) is not None:
...     x, y = rows
>>> stream.close()
"""

import contextlib
import ctypes
import ctypes.util
import os
import queue
import tempfile
import threading
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sparkeras.common.plan import SPLIT_COLUMN
from sparkeras.data import batches_to_arrays

SPILL_FOLDER = "sparkeras-spill"
# Chunks the prefetch thread decodes ahead of the one training uses.
_PREFETCH_CHUNKS = 2
_END = object()
# glibc's mallopt parameter, and the size from which it serves an allocation
# with its own memory map (given back to the system as soon as it is freed).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 1 << 20


def split_validation(batches):
    """Splits Arrow data into (training, validation) by `SPLIT_COLUMN`.

    Args:
        batches: A `pyarrow.RecordBatch` or `pyarrow.Table`.

    Returns:
        (training, validation), each of the same type without the split
        column; validation is None when the data has no split column.

    Example:
    >>> train, validation = split_validation(batch)
    """
    if SPLIT_COLUMN not in batches.schema.names:
        return batches, None
    is_validation = batches.column(SPLIT_COLUMN)
    kept = batches.drop_columns([SPLIT_COLUMN])
    return kept.filter(pc.invert(is_validation)), kept.filter(is_validation)


def spill_directory():
    """The folder for spill files: Spark's first local dir, else the temp dir.

    Spark hands its local directories (`spark.local.dir`, or the cluster
    manager's) to Python workers in `SPARK_LOCAL_DIRS`.

    Example:
    >>> spill_directory()
    '/tmp/spark-.../blockmgr-.../sparkeras-spill'
    """
    dirs = [d for d in os.environ.get("SPARK_LOCAL_DIRS", "").split(",") if d.strip()]
    folder = os.path.join(dirs[0] if dirs else tempfile.gettempdir(), SPILL_FOLDER)
    os.makedirs(folder, exist_ok=True)
    return folder


def remove_stale_spills(folder):
    """Removes spill files whose process is gone (or is this one, from an earlier task).

    A file is named `<pid>-<id>-<kind>.arrow`; a process runs one task at a
    time, so a file of this process is left over from a task that ended.

    Returns:
        The number of files removed.

    Example:
    >>> remove_stale_spills(spill_directory())
    0
    """
    removed = 0
    for name in os.listdir(folder):
        pid = name.split("-", 1)[0]
        if not (name.endswith(".arrow") and pid.isdigit()):
            continue
        if int(pid) == os.getpid() or not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))
                removed += 1
    return removed


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def rss_anon_mb():
    """This process's anonymous resident memory (RssAnon) in MB; 0.0 off Linux.

    Pages of a memory-mapped file are not anonymous: a spill file read through
    a memory map does not count.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def release_large_allocations():
    """Makes glibc give every allocation of 1 MiB or more back to the system when freed.

    By default glibc raises its memory-map threshold each time a mapped block
    is freed, up to 32 MiB, so after the first chunks the shuffle buffer's
    arrays of a few MB come from the heap, whose freed space stays resident
    and fragments: a task's RssAnon then grew with the rows it had streamed.
    A fixed threshold keeps every chunk, pool and decoded batch in its own map.
    Process-wide and idempotent; off glibc (or without ctypes) it does nothing.

    Returns:
        Whether the threshold was set.

    Example:
    >>> release_large_allocations()
    True
    """
    name = ctypes.util.find_library("c")
    if not name or not hasattr(os, "confstr"):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        return bool(ctypes.CDLL(name).mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))
    except (OSError, ValueError, AttributeError):
        return False


class InputStats:
    """Where a task's input time and memory went, for `training_summary`.

    Attributes:
        rows_read: Rows of the partition read from Spark.
        bytes_read: Their Arrow bytes.
        bytes_spilled: Bytes written to spill files.
        input_wait_s: Seconds training waited for input.
        train_s: Seconds spent in training steps.
        peak_rss_anon_mb: Highest RssAnon seen at the sampling points.
    """

    def __init__(self):
        self.rows_read = 0
        self.bytes_read = 0
        self.bytes_spilled = 0
        self.input_wait_s = 0.0
        self.train_s = 0.0
        self.peak_rss_anon_mb = 0.0

    def sample_memory(self):
        """Notes the current RssAnon if it is the highest so far."""
        self.peak_rss_anon_mb = max(self.peak_rss_anon_mb, rss_anon_mb())

    def as_dict(self):
        """The figures as a dict of plain numbers."""
        return dict(vars(self))


def shuffled_chunks(tables, spec, batch_size, buffer_rows, rng, stopped=None):
    """Yields `(x, y)` chunks of the rows of `tables`, shuffled within a buffer.

    Rows gather until at least `buffer_rows` are held; the pool is permuted,
    every whole batch beyond half a buffer is yielded, in chunks of about
    half a buffer, and the rest stays to mix with the next rows. Chunks are
    copies (a chunk in a queue does not keep the pool alive) and hold whole
    batches of `batch_size` rows except the epoch's last.

    Args:
        tables: Iterable of Arrow batches or tables with the projected columns.
        spec: The `DataSpec` turning them into model arrays.
        batch_size: Rows per training step.
        buffer_rows: Rows the shuffle buffer holds.
        rng: A `numpy.random.Generator`; the same seed gives the same order.
        stopped: Optional `threading.Event`; set, it ends the chunks early.

    Example:
    >>> for x, y in shuffled_chunks(batches, spec, 64, 10_000, np.random.default_rng(0)):
    ...     model.fit(x, y, batch_size=64, shuffle=False)
    """
    chunk_rows = max(batch_size, buffer_rows // 2 // batch_size * batch_size)
    pool, held = [], 0
    for table in tables:
        if stopped is not None and stopped.is_set():
            return
        if table.num_rows == 0:
            continue
        pool.append(batches_to_arrays(table, spec))
        held += table.num_rows
        if held < buffer_rows:
            continue
        x, y = _permuted(pool, rng)
        emit = (held - buffer_rows // 2) // batch_size * batch_size
        pool = [(_copied(x, emit, held), _copied(y, emit, held))]
        yield from _chunks(x, y, emit, chunk_rows)
        held -= emit
    if held and not (stopped is not None and stopped.is_set()):
        yield from _chunks(*_permuted(pool, rng), held, chunk_rows)


def _chunks(x, y, rows, chunk_rows):
    """The first `rows` rows as copies of `chunk_rows` rows (the permuted pool is then free)."""
    for first in range(0, rows, chunk_rows):
        last = min(first + chunk_rows, rows)
        yield _copied(x, first, last), _copied(y, first, last)


def _copied(arrays, first, last):
    if arrays is None:
        return None
    if isinstance(arrays, list):
        return [array[first:last].copy() for array in arrays]
    return arrays[first:last].copy()


def _permuted(pool, rng):
    """The pool's rows joined, in a random order (one copy)."""
    x_parts = [part[0] for part in pool]
    y_parts = [part[1] for part in pool]
    order = rng.permutation(sum(len(_first(part)) for part in x_parts))
    return _gather(x_parts, order), _gather(y_parts, order)


def _first(arrays):
    return arrays[0] if isinstance(arrays, list) else arrays


def _gather(parts, order):
    if parts[0] is None:
        return None
    if isinstance(parts[0], list):
        return [_gather([part[i] for part in parts], order) for i in range(len(parts[0]))]
    joined = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return joined[order]


def _rows(arrays, index):
    if arrays is None:
        return None
    if isinstance(arrays, list):
        return [array[index] for array in arrays]
    return arrays[index]


def row_count(arrays):
    """Rows in `x` or `y` as `batches_to_arrays` gives them (an array or a list)."""
    return len(_first(arrays))


class _Spill:
    """One Arrow IPC file written batch by batch, then read memory-mapped."""

    def __init__(self, path):
        self.path = path
        self.bytes = 0
        self._writer = None
        self._sink = None

    def write(self, batch):
        if batch.num_rows == 0:
            return
        if self._writer is None:
            self._sink = pa.OSFile(self.path, "wb")
            self._writer = pa.ipc.new_file(self._sink, batch.schema)
        self._writer.write_batch(batch)
        self.bytes += batch.nbytes

    def finish(self):
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = None

    def reader(self):
        """A reader over the finished file (None when nothing was written)."""
        if self._sink is None:
            return None
        return pa.ipc.open_file(pa.memory_map(self.path, "r"))

    def remove(self):
        with contextlib.suppress(Exception):
            self.finish()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


class TrainingInput:
    """A partition's training rows, streamed once from Spark, then from a spill file.

    Args:
        batches: The task's iterator of Arrow batches (projected columns,
            with `SPLIT_COLUMN` when validation rows travel along).
        spec: The `DataSpec` turning batches into model arrays.
        batch_size: Rows per training step.
        seed: The worker's shuffling seed.
        shuffle_buffer: Rows of the shuffle buffer.
        shards: Devices of the replica: an epoch's row count is trimmed to a
            multiple of it.
        stats: An `InputStats` to fill (a new one by default).

    Attributes:
        num_samples: Training rows seen so far; the partition's count once
            `complete`.
        complete: Whether the partition was read to its end.

    Example:
    >>> stream = TrainingInput(batches, spec, 64, seed=7, shuffle_buffer=10_000)
    >>> stream.drain()  # spill everything first: the count is then known
    >>> stream.num_samples
    25000
    """

    def __init__(self, batches, spec, batch_size, seed, shuffle_buffer, shards=1, stats=None):
        release_large_allocations()
        folder = spill_directory()
        remove_stale_spills(folder)
        name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._train = _Spill(os.path.join(folder, f"{name}-train.arrow"))
        self._validation = _Spill(os.path.join(folder, f"{name}-validation.arrow"))
        self._source = iter(batches)
        self._spec = spec
        self._batch_size = batch_size
        self._seed = seed
        self._buffer_rows = max(int(shuffle_buffer), 2 * batch_size)
        self._shards = max(1, int(shards))
        self.stats = stats or InputStats()
        self.num_samples = 0
        self.validation_samples = 0
        self.complete = False
        self._source_lock = threading.Lock()
        self._epoch = None
        self._thread = None
        self._queue = None
        self._stopped = None
        self._pending = None

    @property
    def spill_paths(self):
        """The paths of this input's spill files (they exist once written)."""
        return [self._train.path, self._validation.path]

    # Reading the partition --------------------------------------------------

    def _from_source(self, stopped=None):
        """Training batches from Spark, spilled (and validation rows too) as they come."""
        while not self.complete:
            if stopped is not None and stopped.is_set():
                return
            with self._source_lock:
                if self.complete:
                    return
                batch = next(self._source, None)
                if batch is None:
                    self._train.finish()
                    self._validation.finish()
                    self.complete = True
                    return
                self.stats.rows_read += batch.num_rows
                self.stats.bytes_read += batch.nbytes
                train, validation = split_validation(batch)
                self._train.write(train)
                if validation is not None:
                    self._validation.write(validation)
                    self.validation_samples += validation.num_rows
                self.num_samples += train.num_rows
                self.stats.bytes_spilled = self._train.bytes + self._validation.bytes
            yield train

    def drain(self):
        """Reads (and spills) the rest of the partition; the counts are then final."""
        self._stop_epoch()
        for _ in self._from_source():
            pass

    def _from_spill(self, rng):
        reader = self._train.reader()
        if reader is None:
            return
        for index in rng.permutation(reader.num_record_batches):
            yield reader.get_batch(int(index))

    # Epochs -------------------------------------------------------------------

    def start_epoch(self, epoch):
        """Starts the prefetch thread for `epoch` (again for the running one: no-op).

        Epoch 0 of a partition not read yet streams from Spark; any other
        first reads the rest of the partition, then the spill file, its
        batches in an order drawn from the seed and the epoch.
        """
        if self._epoch == epoch and self._thread is not None:
            return
        self._stop_epoch()
        rng = np.random.default_rng([self._seed, epoch])
        if not self.complete and (epoch != 0 or self.stats.rows_read):
            self.drain()
        tables = self._from_spill(rng) if self.complete else None
        self._epoch, self._pending = epoch, None
        self._stopped = threading.Event()
        self._queue = queue.Queue(maxsize=_PREFETCH_CHUNKS)
        self._thread = threading.Thread(
            target=self._produce, args=(tables, rng, self._stopped, self._queue),
            name=f"sparkeras-prefetch-{epoch}", daemon=True,
        )
        self._thread.start()

    def _produce(self, tables, rng, stopped, chunks):
        try:
            source = self._from_source(stopped) if tables is None else tables
            for chunk in shuffled_chunks(source, self._spec, self._batch_size,
                                         self._buffer_rows, rng, stopped):
                self.stats.sample_memory()
                if not _put(chunks, chunk, stopped):
                    return
            _put(chunks, _END, stopped)
        except BaseException as error:  # handed to the training thread
            _put(chunks, error, stopped)

    def next_rows(self, max_rows):
        """The epoch's next rows, at most `max_rows` (whole batches), or None at its end."""
        if self._pending is None:
            started = time.perf_counter()
            item = self._queue.get()
            self.stats.input_wait_s += time.perf_counter() - started
            if isinstance(item, BaseException):
                self._queue.put(item)
                raise item
            if item is _END:
                self._queue.put(_END)
                return None
            self._pending = item
        x, y = self._pending
        rows = row_count(y if y is not None else x)
        take = min(rows, max_rows)
        self._pending = None if take == rows else (_rows(x, slice(take, rows)),
                                                   _rows(y, slice(take, rows)))
        if self._pending is None and take % self._batch_size and self._shards > 1:
            take -= take % self._shards  # the epoch's last, partial batch splits evenly
        return _rows(x, slice(0, take)), _rows(y, slice(0, take))

    def _stop_epoch(self):
        if self._thread is None:
            return
        self._stopped.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()
        self._thread = None

    def validation_chunks(self):
        """Yields the validation rows as `(x, y)` chunks of about a shuffle buffer."""
        if not self.complete:
            self.drain()
        reader = self._validation.reader()
        if reader is None:
            return
        tables, held = [], 0
        for index in range(reader.num_record_batches):
            tables.append(reader.get_batch(index))
            held += tables[-1].num_rows
            if held >= self._buffer_rows:
                yield batches_to_arrays(tables, self._spec)
                tables, held = [], 0
        if tables:
            yield batches_to_arrays(tables, self._spec)

    def close(self):
        """Stops the prefetch thread and removes the spill files."""
        with contextlib.suppress(Exception):
            self._stop_epoch()
        self._train.remove()
        self._validation.remove()


def _put(chunks, item, stopped):
    """Puts `item` on the bounded queue unless the epoch is stopped; False if it was."""
    while not stopped.is_set():
        try:
            chunks.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False
