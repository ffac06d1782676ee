"""How the server combines the workers' weights: averages, barriers, a store.

Driver-side module, pure Python and numpy, thread-safe: the server calls
these from one thread per worker connection.
"""

import collections
import contextlib
import threading
import time
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AsyncStore",
    "RoundBarrier",
    "Staleness",
    "check_same_structure",
    "weighted_average",
]

_CHUNK_ELEMENTS = 1 << 18  # float64 scratch of 2 MiB: stays in cache
_REMEMBERED_PUSHES = 1 << 16


def weighted_average(contributions):
    """The sample-weighted mean of each tensor over the contributions.

    Sums in float64 and returns each tensor in its input dtype (integer and
    bool tensors are rounded). Contributions of weight 0 are ignored.

    Args:
        contributions: `{worker_id: (tensors, weight)}`; every worker's list
            has the same shapes and dtypes.

    Returns:
        A list of new arrays.

    Raises:
        ValueError: If every weight is 0, a weight is negative, or the lists
            differ in length, shape or dtype.

    Example:
    >>> weighted_average({0: ([np.zeros(2)], 1), 1: ([np.ones(2)], 3)})
    [array([0.75, 0.75])]
    """
    for worker, (_, weight) in contributions.items():
        if not weight >= 0:
            raise ValueError(
                f"Weights must be sample counts of 0 or more. Received: weight={weight!r} from "
                f"worker {worker}."
            )
    weighted = {w: (t, weight) for w, (t, weight) in contributions.items() if weight > 0}
    if not weighted:
        raise ValueError(
            "Every contribution has weight 0, so there is no average; keep the previous "
            f"weights. Received: workers {sorted(contributions)} with weight 0."
        )
    first_worker, (reference, _) = next(iter(weighted.items()))
    for worker, (tensors, _) in weighted.items():
        check_same_structure(reference, tensors, f"worker {first_worker}", f"worker {worker}")
    total = float(sum(weight for _, weight in weighted.values()))
    parts = [
        ([np.asarray(t) for t in tensors], weight / total) for tensors, weight in weighted.values()
    ]
    if len(parts) == 1:
        return [tensor.copy() for tensor in parts[0][0]]
    return [_mean_of(index, parts) for index in range(len(reference))]


def _mean_of(index, parts):
    """The weighted mean of tensor `index`, a chunk at a time."""
    first = parts[0][0][index]
    result = np.empty(first.shape, first.dtype)
    sources = [(tensors[index].reshape(-1), np.float64(share)) for tensors, share in parts]
    flat_result = result.reshape(-1)
    total = np.empty(min(_CHUNK_ELEMENTS, first.size), dtype=np.float64)
    scratch = np.empty_like(total)
    rounding = first.dtype.kind in "iub"
    for start in range(0, first.size, _CHUNK_ELEMENTS):
        stop = min(start + _CHUNK_ELEMENTS, first.size)
        acc, tmp = total[: stop - start], scratch[: stop - start]
        np.multiply(sources[0][0][start:stop], sources[0][1], out=acc)
        for flat, share in sources[1:]:
            np.multiply(flat[start:stop], share, out=tmp)
            acc += tmp
        if rounding:
            np.rint(acc, out=acc)
        flat_result[start:stop] = acc
    return result


def check_same_structure(expected, received, expected_name, received_name):
    """Raises ValueError naming the index if two tensor lists differ.

    Lists must match in length and, tensor by tensor, in shape and dtype.

    Example:
    >>> check_same_structure(global_weights, tensors, "the global weights", "worker 1's sync")
    """
    if len(received) != len(expected):
        raise ValueError(
            f"{received_name} sent {len(received)} tensors but {expected_name} has "
            f"{len(expected)}. Received: {len(received)} tensors."
        )
    for index, (want, got) in enumerate(zip(expected, received, strict=True)):
        want, got = np.asarray(want), np.asarray(got)
        if want.shape != got.shape or want.dtype != got.dtype:
            raise ValueError(
                f"Tensor {index} of {received_name} has shape {got.shape} and dtype {got.dtype}, "
                f"but {expected_name} has shape {want.shape} and dtype {want.dtype}. "
                f"Received: shape={got.shape}, dtype={got.dtype}."
            )


class _Round:
    """One round's contributions and, once reduced, its outcome."""

    def __init__(self, round_id):
        self.round_id = round_id
        self.values = {}
        self.reducing = False
        self.done = False
        self.result = None
        self.failure = None  # (message, cause) when the round cannot complete


class RoundBarrier:
    """Waits for every worker's contribution to a round, then reduces once.

    Rounds are consecutive ints from `start_round`. `contribute` blocks until
    all `num_workers` workers (ids 0 to num_workers - 1) contributed to the
    round; one thread then calls `reduce_fn({worker_id: value})` and every
    waiter returns its result. A worker that contributes again to the open
    round replaces its value (a retried attempt); a contribution to the last
    completed round returns that round's result (a retry after a lost reply).

    Args:
        num_workers: Workers per round.
        reduce_fn: Called once per round with `{worker_id: value}`; may block.
        timeout_s: Longest wait for the other workers, or None.
        start_round: The first round's id (a resumed fit's next round).

    Example:
    >>> barrier = RoundBarrier(2, weighted_average)
    >>> barrier.contribute(0, worker_id, (weights, samples))  # in each worker's thread
    """

    def __init__(self, num_workers, reduce_fn, timeout_s=None, *, start_round=0):
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be an int of 1 or more. Received: {num_workers!r}.")
        self._num_workers = num_workers
        self._reduce_fn = reduce_fn
        self._timeout_s = timeout_s
        self._condition = threading.Condition()
        self._open = _Round(start_round)
        self._last = None
        self._abort_reason = None

    @property
    def arrived(self):
        """How many workers have contributed to the open round so far."""
        with self._condition:
            return len(self._open.values)

    @property
    def last_completed_round(self):
        """Id of the last round reduced, or None."""
        with self._condition:
            return None if self._last is None else self._last.round_id

    @property
    def last_result(self):
        """What `reduce_fn` returned for the last completed round, or None."""
        with self._condition:
            return None if self._last is None else self._last.result

    def contribute(self, round_id, worker_id, value):
        """Adds `value` for `worker_id` to `round_id`; returns the round's result.

        Raises:
            ValueError: For a round other than the open or last completed
                one, or a worker id out of range.
            TimeoutError: If the other workers do not arrive within timeout_s.
            RuntimeError: If the barrier was aborted, this contribution was
                discarded, or `reduce_fn` raised.
        """
        if not (isinstance(worker_id, int) and 0 <= worker_id < self._num_workers):
            raise ValueError(
                f"worker_id must be from 0 to {self._num_workers - 1}. Received: "
                f"worker_id={worker_id!r} for round {round_id}."
            )
        with self._condition:
            self._raise_if_aborted()
            if self._last is not None and round_id == self._last.round_id:
                return self._last.result
            current = self._open
            if round_id != current.round_id:
                last = None if self._last is None else self._last.round_id
                raise ValueError(
                    f"Worker {worker_id} contributed to round {round_id}, but the open round is "
                    f"{current.round_id} (last completed: {last}). Only the "
                    "open round and, for retries, the last completed round are accepted."
                )
            if not current.reducing:
                current.values[worker_id] = value
            if len(current.values) == self._num_workers and not current.reducing:
                current.reducing = True
                values = dict(current.values)
            else:
                return self._wait(current)
        return self._reduce(current, values)

    def abort(self, reason):
        """Makes every current and future `contribute` raise RuntimeError(reason)."""
        with self._condition:
            self._abort_reason = str(reason)
            self._condition.notify_all()

    def discard_open_round(self):
        """Drops the open round's contributions, as a failed attempt left them.

        Their waiters raise RuntimeError and the round starts over empty. No
        effect once the round is reducing.

        Example:
        >>> barrier.discard_open_round()  # before relaunching the training job
        """
        with self._condition:
            stale = self._open
            if stale.reducing:
                return
            stale.done = True
            stale.failure = (
                f"Round {stale.round_id}'s contributions were discarded (workers "
                f"{sorted(stale.values)}); contribute again.",
                None,
            )
            self._open = _Round(stale.round_id)
            self._condition.notify_all()

    def _wait(self, current):
        """Blocks (holding the condition) until `current` is reduced."""
        deadline = None if self._timeout_s is None else time.monotonic() + self._timeout_s
        while not current.done:
            self._raise_if_aborted()
            if current.reducing or deadline is None:
                self._condition.wait()
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                arrived = sorted(current.values)
                missing = sorted(set(range(self._num_workers)) - set(arrived))
                raise TimeoutError(
                    f"Round {current.round_id} timed out after timeout_s={self._timeout_s} s: "
                    f"workers {arrived} arrived, {missing} did not. Raise timeout_s if workers "
                    "legitimately take longer between exchanges."
                )
            self._condition.wait(left)
        self._raise_if_aborted()
        if current.failure is not None:
            message, cause = current.failure
            raise RuntimeError(message) from cause
        return current.result

    def _reduce(self, current, values):
        """Runs `reduce_fn` outside the lock, then publishes the outcome."""
        try:
            result = self._reduce_fn(values)
        except Exception as error:
            message = f"Round {current.round_id} failed: {error}"
            with self._condition:
                current.done, current.failure = True, (message, error)
                self._open = _Round(current.round_id)
                self._condition.notify_all()
            raise RuntimeError(message) from error
        with self._condition:
            current.done, current.result = True, result
            self._last = current
            self._open = _Round(current.round_id + 1)
            self._condition.notify_all()
            self._raise_if_aborted()
        return result

    def _raise_if_aborted(self):
        if self._abort_reason is not None:
            raise RuntimeError(self._abort_reason)


@dataclass(frozen=True)
class Staleness:
    """How an `AsyncStore` treats a delta pushed from older weights.

    Attributes:
        damping: Divide each delta by its staleness + 1 (DynSGD).
        max_staleness: Refuse pushes staler than this; None accepts all.

    Example:
    >>> TrainingCoordinator(2, weights, "asynchronous", staleness=Staleness(max_staleness=4))
    """

    damping: bool = True
    max_staleness: int = None


class AsyncStore:
    """Global weights that workers push deltas to and pull from, unsynchronised.

    Each push is `w += delta / (staleness + 1)` (with damping, DynSGD) where
    staleness is how many pushes landed since the worker's base version.

    Args:
        initial: The starting weights (copied).
        lock: Serialise pushes and pulls; False is "hogwild": updates race by
            design (shape checks and push ids still hold).
        damping: Divide each delta by its staleness + 1.
        max_staleness: Refuse pushes staler than this; None accepts all.

    Example:
    >>> store = AsyncStore(model.get_weights())
    >>> version, weights = store.pull()
    >>> store.push(delta, base_version=version, push_id=(worker, attempt, step))
    """

    def __init__(self, initial, *, lock=True, damping=True, max_staleness=None):
        self._weights = [np.array(tensor, copy=True) for tensor in initial]
        self._update_lock = threading.Lock() if lock else None
        self._ids_lock = threading.Lock()
        self._damping = damping
        self._max_staleness = max_staleness
        self._version = 0
        self._applied = collections.OrderedDict()

    @property
    def version(self):
        """How many pushes (and `set_weights`) have been applied."""
        return self._version

    def pull(self):
        """`(version, copies of the weights)`.

        Example:
        >>> version, weights = store.pull()
        """
        with self._maybe_locked():
            return self._version, [tensor.copy() for tensor in self._weights]

    def set_weights(self, weights):
        """Replaces the weights (same shapes and dtypes) and bumps the version.

        Example:
        >>> store.set_weights(checkpoint_weights)
        """
        weights = [np.asarray(tensor) for tensor in weights]
        check_same_structure(self._weights, weights, "the store", "set_weights")
        with self._maybe_locked(), self._ids_lock:
            for target, source in zip(self._weights, weights, strict=True):
                np.copyto(target, source)
            self._version += 1

    def push(self, delta, *, base_version, push_id):
        """Applies `delta` to the weights unless it is a duplicate or too stale.

        Args:
            delta: One array per weight, same shapes and dtypes.
            base_version: The version the worker computed its delta from.
            push_id: Hashable id; a push id seen before is not applied again.

        Returns:
            `(version, applied, reason)`; reason is "applied", "stale" or
            "duplicate".

        Raises:
            ValueError: Wrong number, shape or dtype of tensors, or a base
                version newer than the store's.

        Example:
        >>> store.push(delta, base_version=3, push_id=(0, 0, 17))
        (4, True, 'applied')
        """
        delta = [np.asarray(tensor) for tensor in delta]
        check_same_structure(self._weights, delta, "the store", "the push")
        with self._maybe_locked():
            with self._ids_lock:
                staleness = self._version - base_version
                if staleness < 0:
                    raise ValueError(
                        f"base_version {base_version} is newer than the store's version "
                        f"{self._version}; pull again. Received: base_version={base_version}."
                    )
                if push_id in self._applied:
                    return self._version, False, "duplicate"
                if self._max_staleness is not None and staleness > self._max_staleness:
                    return self._version, False, "stale"
                self._remember(push_id)
            scale = 1.0 / (staleness + 1) if self._damping else 1.0
            for weight, change in zip(self._weights, delta, strict=True):
                _add_scaled(weight, change, scale)
            with self._ids_lock:
                self._version += 1
                return self._version, True, "applied"

    def _maybe_locked(self):
        return self._update_lock if self._update_lock is not None else contextlib.nullcontext()

    def _remember(self, push_id):
        self._applied[push_id] = None
        if len(self._applied) > _REMEMBERED_PUSHES:
            self._applied.popitem(last=False)


def _add_scaled(weight, change, scale):
    """`weight += change * scale` in place, rounding for integer weights."""
    if scale == 1.0:
        np.add(weight, change, out=weight)
    elif weight.dtype.kind == "f":
        np.add(weight, change * weight.dtype.type(scale), out=weight)
    else:
        np.add(weight, np.rint(change * scale).astype(weight.dtype), out=weight)
