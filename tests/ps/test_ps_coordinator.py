"""The fit's request handler refuses what a buggy or hostile worker with the secret sends.

Each refusal is a ValueError naming the value received (a RemoteError on the
wire), raised before the request touches a barrier, the store or the sums, so
the legitimate workers' rounds complete with exactly their own contributions.
"""

import concurrent.futures
import threading

import numpy as np
import pytest

from sparkeras.ps.coordinator import TrainingCoordinator

WEIGHTS = [np.zeros((3, 2), np.float32), np.zeros(2, np.float32)]


def _registered(mode="synchronous", num_workers=2):
    """A coordinator whose workers all registered, with 2 batches (one round) per epoch."""
    coordinator = TrainingCoordinator(num_workers, WEIGHTS, mode)
    with concurrent.futures.ThreadPoolExecutor(num_workers) as pool:
        replies = list(
            pool.map(
                lambda worker: coordinator.handle("register", {"worker": worker, "batches": 2}, []),
                range(num_workers),
            )
        )
    assert [reply["rounds_per_epoch"] for reply, _ in replies] == [1] * num_workers
    return coordinator


def _sync(worker, round_id=0, launch=0, samples=10, **extra):
    return {
        "worker": worker,
        "round": round_id,
        "launch": launch,
        "samples": samples,
        "sums": {"loss": 1.0},
        **extra,
    }


def _in_thread(function, *args):
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=function(*args)), daemon=True)
    thread.start()
    return thread, result


def _wait_for_contributions(coordinator, count):
    """Waits until the open round holds `count` contributions (a legit one is waiting)."""
    barrier = coordinator._rounds
    for _ in range(500):
        with barrier._condition:
            if len(barrier._open.values) == count:
                return
        threading.Event().wait(0.01)
    raise AssertionError(f"the open round never held {count} contribution(s)")


@pytest.mark.parametrize(
    "tensors, message",
    [
        ([np.ones((2, 3), np.float32), np.ones(2, np.float32)], r"shape \(2, 3\)"),
        ([np.ones((3, 2), np.float64), np.ones(2, np.float32)], "dtype float64"),
        ([np.ones((3, 2), np.float32)], "sent 1 tensors"),
        ([np.frombuffer(b"\x80\x04K\x01.", np.uint8)], "sent 1 tensors"),
    ],
)
def test_a_sync_of_the_wrong_structure_never_replaces_a_waiting_contribution(tensors, message):
    coordinator = _registered()
    legit = [np.full((3, 2), 2.0, np.float32), np.full(2, 2.0, np.float32)]
    waiting, result = _in_thread(coordinator.handle, "sync", _sync(0), legit)
    _wait_for_contributions(coordinator, 1)
    with pytest.raises(ValueError, match=message):
        coordinator.handle("sync", _sync(0), tensors)
    other = [np.full((3, 2), 4.0, np.float32), np.full(2, 4.0, np.float32)]
    _, average = coordinator.handle("sync", _sync(1, samples=30), other)
    waiting.join(5)
    assert [a.tolist() for a in average] == [[[3.5, 3.5]] * 3, [3.5, 3.5]]
    assert [a.tolist() for a in result["value"][1]] == [a.tolist() for a in average]
    assert coordinator._epoch_sums[0] == {"samples": 40, "sums": {"loss": 2.0}}


@pytest.mark.parametrize(
    "header, message",
    [
        (_sync(2), "worker, an int from 0 to 1. Received: worker=2"),
        (_sync(-1), "Received: worker=-1"),
        (_sync(True), "Received: worker=True"),
        (_sync("0"), "Received: worker='0'"),
        (_sync(0, round_id=-1), "Received: round=-1"),
        (_sync(0, round_id=1.0), "Received: round=1.0"),
        (_sync(0, round_id=5), "open round is 0"),
        (_sync(0, launch=1), "launch 1 of the training job, but launch 0"),
        (_sync(0, samples=-5), "Received: samples=-5"),
        (_sync(0, samples="many"), "Received: samples='many'"),
        (_sync(0, sums={"loss": "x"}), "sums must map metric names to numbers"),
        ({"worker": 0}, "Received: launch=None"),
    ],
)
def test_a_malformed_or_stale_sync_is_refused_naming_the_value(header, message):
    coordinator = _registered()
    with pytest.raises(ValueError, match=message):
        coordinator.handle("sync", header, WEIGHTS)
    assert coordinator._rounds._open.values == {}
    assert coordinator._epoch_sums == {}


def test_a_register_from_a_worker_that_does_not_exist_is_refused_and_not_recorded():
    coordinator = TrainingCoordinator(2, WEIGHTS, "synchronous")
    for header in (
        {"worker": 2, "batches": 1},
        {"worker": [0], "batches": 1},
        {"worker": 0, "batches": "x"},
        {"worker": 1, "batches": -1},
    ):
        with pytest.raises(ValueError, match="Received: (worker|batches)="):
            coordinator.handle("register", header, [])
    assert coordinator.workers == {}
    _registered_by = concurrent.futures.ThreadPoolExecutor(2)
    futures = [
        _registered_by.submit(coordinator.handle, "register", {"worker": w, "batches": 3}, [])
        for w in (0, 1)
    ]
    assert [f.result(5)[0]["rounds_per_epoch"] for f in futures] == [1, 1]
    assert sorted(coordinator.workers) == [0, 1]


def test_requests_of_a_replaced_launch_are_refused():
    coordinator = _registered()
    coordinator.relaunch()
    with pytest.raises(ValueError, match="launch 0 of the training job, but launch 1"):
        coordinator.handle("sync", _sync(0, launch=0), WEIGHTS)
    with pytest.raises(ValueError, match="launch 0 of the training job, but launch 1"):
        coordinator.handle("epoch_end", {"worker": 0, "launch": 0, "epoch": 0, "samples": 1}, [])


def test_epoch_end_and_fail_headers_are_checked_before_they_count():
    coordinator = _registered()
    bad_epoch_ends = [
        {"worker": 0, "launch": 0, "epoch": 0, "samples": "x"},
        {"worker": 0, "launch": 0, "epoch": -1, "samples": 1},
        {"worker": 7, "launch": 0, "epoch": 0, "samples": 1},
        {"worker": 0, "launch": 0, "epoch": 0, "samples": 1, "validation_samples": 1.5},
        {"worker": 0, "launch": 0, "epoch": 0, "samples": 1, "validation_sums": [1]},
    ]
    for header in bad_epoch_ends:
        with pytest.raises(ValueError, match="Received: "):
            coordinator.handle("epoch_end", header, [])
    assert coordinator._epochs._open.values == {}
    with pytest.raises(ValueError, match="Received: worker=9"):
        coordinator.handle("fail", {"worker": 9, "message": "boom"}, [])
    with pytest.raises(ValueError, match="Received: message=None"):
        coordinator.handle("fail", {"worker": 0}, [])
    assert coordinator.failure is None and coordinator.events.empty()


def test_the_wrong_exchange_for_the_mode_is_refused():
    synchronous = _registered()
    with pytest.raises(ValueError, match="synchronous fit exchanges weights with 'sync'"):
        synchronous.handle("push", {**_sync(0), "base_version": 0}, WEIGHTS)
    asynchronous = _registered("asynchronous")
    with pytest.raises(ValueError, match="asynchronous fit exchanges weights with 'push'"):
        asynchronous.handle("sync", _sync(0), WEIGHTS)
    unregistered = TrainingCoordinator(2, WEIGHTS, "synchronous")
    with pytest.raises(ValueError, match="before every worker registered"):
        unregistered.handle("sync", _sync(0), WEIGHTS)


def test_a_bad_push_leaves_the_store_and_the_sums_untouched():
    coordinator = _registered("asynchronous")
    delta = [np.ones((3, 2), np.float32), np.ones(2, np.float32)]
    refused = [
        ({**_sync(0), "base_version": 0, "sums": {"loss": None}}, delta, "sums must map"),
        ({**_sync(5), "base_version": 0}, delta, "Received: worker=5"),
        ({**_sync(0, round_id=1), "base_version": 0}, delta, "not in the open epoch 0"),
        ({**_sync(0), "base_version": -1}, delta, "Received: base_version=-1"),
        ({**_sync(0), "base_version": 3}, delta, "newer than the store's version 0"),
        ({**_sync(0), "base_version": 0}, delta[:1], "sent 1 tensors"),
        ({**_sync(0), "base_version": 0}, [d.astype(np.int64) for d in delta], "dtype int64"),
    ]
    for header, tensors, message in refused:
        with pytest.raises(ValueError, match=message):
            coordinator.handle("push", header, tensors)
    assert coordinator._store.version == 0
    assert all(not w.any() for w in coordinator.global_weights)
    assert coordinator._epoch_sums == {}
    reply, weights = coordinator.handle("push", {**_sync(1), "base_version": 0}, delta)
    assert (reply["version"], reply["applied"], reply["reason"]) == (1, True, "applied")
    assert [w.tolist() for w in weights] == [d.tolist() for d in delta]


def test_progress_and_warnings_reach_the_driver_as_named_events_once():
    from sparkeras.ps.events import Progress, WarningReport
    from sparkeras.ps.progress_reports import warning_key

    coordinator = _registered()
    seen = {"category": "UserWarning", "message": "batch 3 of 0x7f01 is slow"}
    again = {"category": "UserWarning", "message": "batch 12 of 0x7e99 is slow"}
    assert warning_key(**seen) == warning_key(**again)  # the workers' key, too
    for worker, item in enumerate([seen, again]):
        header = {"worker": worker, "launch": 0, "epoch": 0, "steps": 1, "samples": 10,
                  "metric_samples": 10, "seconds": 0.5, "sums": {"loss": 5.0 * (worker + 1)},
                  "warnings": [item]}
        assert coordinator.handle("progress", header, []) == ({"stop": False}, [])
    events = [coordinator.events.get_nowait() for _ in range(coordinator.events.qsize())]
    assert events[0] == WarningReport({**seen, "worker": 0})
    assert [type(event) for event in events[1:]] == [Progress, Progress]  # no second warning
    assert events[-1].epoch == 0
    assert events[-1].info["steps"] == 2 and events[-1].info["total_steps"] == 4
    assert events[-1].info["logs"] == {"loss": pytest.approx(15.0 / 20)}
    coordinator.abort("The driver stopped the fit.")
    assert coordinator.events.empty()  # an abort reaches the driver as the job's end


def _start(coordinator, worker, attempt=0, stage=7):
    return coordinator.handle("start", {"worker": worker, "attempt": attempt, "stage": stage}, [])


def test_first_attempts_wait_for_one_another_then_all_go():
    from ps_helpers import wait_for

    coordinator = TrainingCoordinator(2, WEIGHTS, "synchronous", start_timeout_s=60)
    thread, result = _in_thread(_start, coordinator, 0)
    wait_for(lambda: coordinator._gang.arrived == 1)
    assert "value" not in result  # worker 0 waits for worker 1's task
    assert _start(coordinator, 1) == ({"go": True}, [])
    thread.join(10)
    assert result["value"] == ({"go": True}, [])


def test_a_gang_that_does_not_start_in_time_ends_the_fit_naming_the_slots():
    coordinator = TrainingCoordinator(2, WEIGHTS, "synchronous", start_timeout_s=0.2)
    with pytest.raises(TimeoutError):
        _start(coordinator, 0)
    error = coordinator.start_error
    assert "Only 1 of the fit's 2 training tasks started within 0.2 s" in str(error)
    assert "fewer free task slots than num_workers" in str(error)
    with pytest.raises(RuntimeError):  # every waiter of the fit is woken
        coordinator.handle("register", {"worker": 1, "batches": 2}, [])


def test_a_retried_task_asks_for_a_relaunch_with_its_earlier_attempt_s_error():
    from sparkeras.ps.events import TaskRetried

    coordinator = TrainingCoordinator(2, WEIGHTS, "synchronous")
    coordinator.handle("crashed", {"worker": 1, "message": "OSError: disk full"}, [])
    assert _start(coordinator, 1, attempt=1) == ({"go": False}, [])
    assert coordinator.events.get_nowait() == TaskRetried(1, 1, 0, "OSError: disk full")


def test_tasks_of_a_replaced_launch_are_told_to_stop():
    coordinator = TrainingCoordinator(1, WEIGHTS, "synchronous")
    assert _start(coordinator, 0, stage=3) == ({"go": True}, [])
    coordinator.relaunch()
    assert _start(coordinator, 0, attempt=1, stage=3) == ({"go": False}, [])
    assert coordinator.events.empty()  # a stale retry does not cancel the new launch
    assert _start(coordinator, 0, stage=4) == ({"go": True}, [])


@pytest.mark.parametrize("header, message", [
    ({"worker": 0, "attempt": -1, "stage": 1}, "needs attempt"),
    ({"worker": 0, "attempt": 0}, "needs stage"),
    ({"worker": 5, "attempt": 0, "stage": 1}, "needs worker"),
])
def test_a_malformed_start_is_refused_naming_the_value(header, message):
    coordinator = TrainingCoordinator(2, WEIGHTS, "synchronous")
    with pytest.raises(ValueError, match=message):
        coordinator.handle("start", header, [])
    assert coordinator._gang.arrived == 0
