"""weighted_average, RoundBarrier and AsyncStore, alone and behind a real server."""

import secrets
import threading

import numpy as np
import pytest
from ps_helpers import wait_for

from sparkeras.ps import (
    AsyncStore,
    ParameterClient,
    ParameterServer,
    RemoteError,
    RoundBarrier,
    weighted_average,
)

SECRET = secrets.token_bytes(32)


def run_threads(target, args_list, timeout_s=10):
    """Runs `target(*args)` per args in threads; returns results or raises the first error."""
    results, errors = [None] * len(args_list), []

    def run(index, args):
        try:
            results[index] = target(*args)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(args_list)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
    assert not any(thread.is_alive() for thread in threads), "threads still waiting"
    if errors:
        raise errors[0]
    return results


# weighted_average --------------------------------------------------------------


def test_weighted_average_matches_the_formula_and_keeps_dtypes():
    rng = np.random.default_rng(0)
    shapes = [(300_000,), (3, 4), ()]  # the first spans several chunks
    contributions = {
        worker: ([rng.normal(size=s).astype(np.float32) for s in shapes], samples)
        for worker, samples in enumerate([10, 30, 60])
    }
    result = weighted_average(contributions)
    for index, tensor in enumerate(result):
        expected = (
            sum(c[0][index].astype(np.float64) * c[1] for c in contributions.values()) / 100.0
        )
        assert tensor.dtype == np.float32 and tensor.shape == shapes[index]
        np.testing.assert_allclose(tensor, expected, rtol=1e-6, atol=1e-7)


def test_weighted_average_rounds_integers_and_handles_half_precision():
    result = weighted_average(
        {
            0: ([np.array([0, 10], np.int64), np.array([1.0], np.float16)], 1),
            1: ([np.array([3, 20], np.int64), np.array([3.0], np.float16)], 3),
        }
    )
    assert result[0].dtype == np.int64 and result[0].tolist() == [2, 18]
    assert result[1].dtype == np.float16 and result[1].tolist() == [2.5]


def test_weighted_average_ignores_zero_weights_and_refuses_all_zero():
    ones, nines = [np.ones(2, np.float32)], [np.full(2, 9, np.float32)]
    result = weighted_average({0: (ones, 5), 1: (nines, 0)})
    assert result[0].tolist() == [1.0, 1.0]
    assert result[0] is not ones[0]  # a new array, even for one contributor
    with pytest.raises(ValueError, match="weight 0"):
        weighted_average({0: (ones, 0), 1: (nines, 0)})
    with pytest.raises(ValueError, match="weight=-1"):
        weighted_average({0: (ones, -1)})


def test_weighted_average_names_the_mismatching_tensor():
    with pytest.raises(ValueError, match=r"Tensor 1 of worker 1 has shape \(3,\).*shape \(2,\)"):
        weighted_average({0: ([np.ones(1), np.ones(2)], 1), 1: ([np.ones(1), np.ones(3)], 1)})
    with pytest.raises(ValueError, match="sent 1 tensors but worker 0 has 2"):
        weighted_average({0: ([np.ones(1), np.ones(2)], 1), 1: ([np.ones(1)], 1)})


# RoundBarrier ------------------------------------------------------------------


def test_barrier_reduces_each_round_once_and_everyone_gets_the_result():
    reduced = []

    def reduce_fn(values):
        reduced.append(dict(values))
        return sum(values.values())

    barrier = RoundBarrier(4, reduce_fn, timeout_s=10)
    for round_id in range(3):
        results = run_threads(
            barrier.contribute, [(round_id, w, 10 * round_id + w) for w in range(4)]
        )
        assert results == [40 * round_id + 6] * 4
    assert [sorted(v) for v in reduced] == [[0, 1, 2, 3]] * 3
    assert barrier.last_completed_round == 2 and barrier.last_result == 86


def test_barrier_replaces_a_retried_contribution_and_caches_the_last_result():
    barrier = RoundBarrier(2, lambda values: dict(values), start_round=5)
    first = threading.Thread(target=barrier.contribute, args=(5, 0, "first try"))
    first.start()
    assert wait_for(lambda: barrier.arrived == 1, timeout_s=60)  # the first attempt waits
    results = run_threads(barrier.contribute, [(5, 0, "retry"), (5, 1, "other")])
    first.join(5)
    assert results == [{0: "retry", 1: "other"}] * 2
    # A retry after a lost reply gets the cached result alone: no other worker comes.
    assert barrier.contribute(5, 1, "lost reply") == {0: "retry", 1: "other"}
    assert barrier.arrived == 0 and barrier.last_completed_round == 5


def test_barrier_refuses_old_and_future_rounds_naming_both():
    barrier = RoundBarrier(1, lambda values: values[0])
    for round_id in range(3):
        barrier.contribute(round_id, 0, round_id)
    with pytest.raises(ValueError, match="round 0, but the open round is 3"):
        barrier.contribute(0, 0, "old")
    with pytest.raises(ValueError, match="round 9, but the open round is 3"):
        barrier.contribute(9, 0, "future")
    with pytest.raises(ValueError, match="worker_id must be from 0 to 0"):
        barrier.contribute(3, 1, "stranger")
    assert barrier.contribute(2, 0, "retry") == 2


def test_barrier_abort_wakes_waiters_and_refuses_later_contributions():
    barrier = RoundBarrier(3, lambda values: values)
    errors = []

    def contribute(worker):
        try:
            barrier.contribute(0, worker, worker)
        except RuntimeError as error:
            errors.append(str(error))

    threads = [threading.Thread(target=contribute, args=(w,)) for w in range(2)]
    for thread in threads:
        thread.start()
    assert wait_for(lambda: barrier.arrived == 2, timeout_s=60)
    barrier.abort("The driver stopped the fit.")
    for thread in threads:
        thread.join(5)
    assert errors == ["The driver stopped the fit."] * 2
    with pytest.raises(RuntimeError, match="The driver stopped the fit."):
        barrier.contribute(0, 2, 2)


def test_barrier_timeout_names_the_round_the_workers_and_the_setting():
    barrier = RoundBarrier(3, lambda values: values, timeout_s=0.2, start_round=4)
    with pytest.raises(TimeoutError) as caught:
        barrier.contribute(4, 1, "x")
    message = str(caught.value)
    assert "Round 4" in message and "[1] arrived" in message and "[0, 2] did not" in message
    assert "timeout_s=0.2" in message


def test_barrier_discard_open_round_releases_waiters_and_starts_over():
    barrier = RoundBarrier(2, lambda values: sorted(values.items()))
    errors = []

    def stale_attempt():
        try:
            barrier.contribute(0, 0, "failed attempt")
        except RuntimeError as error:
            errors.append(str(error))

    thread = threading.Thread(target=stale_attempt)
    thread.start()
    assert wait_for(lambda: barrier.arrived == 1, timeout_s=60)
    barrier.discard_open_round()
    thread.join(5)
    assert errors and "discarded" in errors[0]
    results = run_threads(barrier.contribute, [(0, 0, "new"), (0, 1, "new")])
    assert results == [[(0, "new"), (1, "new")]] * 2


def test_barrier_reduce_failure_reaches_every_waiter_and_the_round_can_be_retried():
    attempts = []

    def reduce_fn(values):
        attempts.append(values)
        if len(attempts) == 1:
            raise ValueError("bad weights")
        return "ok"

    barrier = RoundBarrier(2, reduce_fn)
    with pytest.raises(RuntimeError, match="Round 0 failed: bad weights"):
        run_threads(barrier.contribute, [(0, 0, 1), (0, 1, 1)])
    assert run_threads(barrier.contribute, [(0, 0, 1), (0, 1, 1)]) == ["ok", "ok"]
    assert barrier.last_completed_round == 0


def test_synchronous_rounds_through_a_real_server():
    """Four workers average sample-weighted weights through TCP, round after round."""
    samples = (1, 1, 2, 4)
    barrier = RoundBarrier(4, weighted_average, timeout_s=10)

    def handler(op, header, tensors):
        averaged = barrier.contribute(
            header["round"], header["worker"], (tensors, header["samples"])
        )
        return {"round": header["round"]}, averaged

    def worker(address, worker_id):
        with ParameterClient(*address, SECRET, timeout_s=10) as client:
            weights = [np.full((50, 20), worker_id, np.float32), np.full(3, worker_id, np.float64)]
            for round_id in range(3):
                header, weights = client.call(
                    "sync",
                    {"round": round_id, "worker": worker_id, "samples": samples[worker_id]},
                    [w + 1 for w in weights],
                )
                assert header == {"round": round_id}
            return weights

    with ParameterServer(handler, secret=SECRET) as server:
        results = run_threads(worker, [(server.address, w) for w in range(4)])
    # Round 0 averages 1, 2, 3, 4 weighted 1:1:2:4 to 25 / 8; each later round adds 1.
    # Eighths are exact in binary, so the result is exact whatever order workers arrive in.
    for weights in results:
        assert np.all(weights[0] == 5.125) and weights[0].dtype == np.float32
        assert np.all(weights[1] == 5.125) and weights[1].dtype == np.float64


# AsyncStore --------------------------------------------------------------------


def test_64_concurrent_clients_push_exactly_through_a_real_server():
    initial = [np.zeros((40, 25), np.float32), np.zeros(7, np.float64), np.zeros((), np.int64)]
    store = AsyncStore(initial, lock=True, damping=False)

    def handler(op, header, tensors):
        version, applied, reason = store.push(
            tensors, base_version=header["base_version"], push_id=(header["worker"], header["step"])
        )
        return {"version": version, "applied": applied, "reason": reason}, []

    def worker(address, worker_id):
        with ParameterClient(*address, SECRET, timeout_s=30) as client:
            for step in range(3):
                delta = [np.full_like(t, worker_id + step) for t in initial]
                header, _ = client.call(
                    "push", {"worker": worker_id, "step": step, "base_version": 0}, delta
                )
                assert header["applied"] and header["reason"] == "applied"

    with ParameterServer(handler, secret=SECRET, max_connections=80) as server:
        run_threads(worker, [(server.address, w) for w in range(64)], timeout_s=60)
    expected = sum(w + s for w in range(64) for s in range(3))
    version, weights = store.pull()
    assert version == 64 * 3
    for tensor in weights:
        assert np.all(tensor == expected)


def test_damping_divides_by_staleness_and_the_bound_refuses():
    store = AsyncStore([np.zeros(2, np.float32)], max_staleness=2)
    assert store.push([np.full(2, 4.0, np.float32)], base_version=0, push_id="a") == (
        1,
        True,
        "applied",
    )
    assert store.push([np.full(2, 4.0, np.float32)], base_version=0, push_id="b")[1]  # 4 / 2
    assert store.push([np.full(2, 3.0, np.float32)], base_version=0, push_id="c")[1]  # 3 / 3
    assert store.pull()[1][0].tolist() == [7.0, 7.0]
    assert store.push([np.ones(2, np.float32)], base_version=0, push_id="d") == (3, False, "stale")
    with pytest.raises(ValueError, match="newer than the store's version 3"):
        store.push([np.ones(2, np.float32)], base_version=9, push_id="e")


def test_push_ids_are_applied_once():
    store = AsyncStore([np.zeros(3)], damping=False)
    assert store.push([np.ones(3)], base_version=0, push_id=(0, 0, 1)) == (1, True, "applied")
    assert store.push([np.ones(3)], base_version=0, push_id=(0, 0, 1)) == (1, False, "duplicate")
    assert store.pull()[1][0].tolist() == [1.0, 1.0, 1.0]


def test_store_refuses_wrong_structure_naming_index_shapes_and_dtypes():
    store = AsyncStore([np.zeros((2, 2), np.float32), np.zeros(3, np.float32)], lock=False)
    with pytest.raises(ValueError, match=r"Tensor 1 of the push has shape \(4,\).*shape \(3,\)"):
        store.push(
            [np.zeros((2, 2), np.float32), np.zeros(4, np.float32)], base_version=0, push_id=1
        )
    with pytest.raises(ValueError, match="dtype float64.*dtype float32"):
        store.push([np.zeros((2, 2)), np.zeros(3)], base_version=0, push_id=2)
    with pytest.raises(ValueError, match="sent 1 tensors"):
        store.push([np.zeros((2, 2), np.float32)], base_version=0, push_id=3)
    assert store.version == 0


def test_hogwild_store_applies_sequential_pushes_and_pull_returns_copies():
    store = AsyncStore([np.zeros(4, np.float32)], lock=False, damping=False)
    for step in range(5):
        store.push([np.ones(4, np.float32)], base_version=store.version, push_id=step)
    version, (weights,) = store.pull()
    weights += 100
    assert version == 5 and store.pull()[1][0].tolist() == [5.0] * 4
    store.set_weights([np.full(4, 2.0, np.float32)])
    assert store.pull()[0] == 6 and store.pull()[1][0].tolist() == [2.0] * 4


def test_store_errors_reach_the_client_as_remote_errors():
    store = AsyncStore([np.zeros(3, np.float32)])

    def handler(op, header, tensors):
        return {"result": list(store.push(tensors, base_version=0, push_id=1))}, []

    with ParameterServer(handler, secret=SECRET) as server:
        with ParameterClient(*server.address, SECRET) as client:
            with pytest.raises(RemoteError, match="shape"):
                client.call("push", {}, [np.zeros(4, np.float32)])
            assert client.call("push", {}, [np.ones(3, np.float32)])[0]["result"] == [
                1,
                True,
                "applied",
            ]


def test_weighted_average_of_non_contiguous_tensors():
    first = np.arange(6.0).reshape(2, 3).T  # Fortran order
    second = np.asfortranarray(np.ones((3, 2)))
    (result,) = weighted_average({0: ([first], 1), 1: ([second], 1)})
    assert np.array_equal(result, (first + 1) / 2)
