"""Tasks pin their replica to Spark's GPUs; several devices per task; driver checks.

The Spark tests start their own session in a subprocess (`devices_fit_child.py`):
devices are fixed when a backend starts, and the test process already holds
the `spark` fixture's SparkContext. GPUs are fake (tests/fake_gpu_discovery.sh):
what is checked is which addresses each task pinned, not CUDA itself.
"""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from helpers import REPO_DIR, TESTS_DIR

_HERE = TESTS_DIR  # the *_child.py scripts
_REPO = REPO_DIR


class _Context:
    """A stand-in for `pyspark.TaskContext` with the given GPU addresses."""

    def __init__(self, gpus=None):
        self._gpus = gpus

    def resources(self):
        from pyspark.resource import ResourceInformation

        return {} if self._gpus is None else {"gpu": ResourceInformation("gpu", self._gpus)}


class _Conf(dict):
    def get(self, key, default=None):
        return super().get(key, default)


@pytest.fixture
def fresh_worker(monkeypatch):
    """This process as a Python worker that has pinned nothing yet (restored after)."""
    from sparkeras.worker import devices

    monkeypatch.setattr(devices, "_pinned", None)
    for name in ("CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS", "XLA_FLAGS"):
        monkeypatch.setenv(name, "")  # records the variable, so the test's changes are undone
        monkeypatch.delenv(name)
    jax = sys.modules.get("jax")
    platforms = jax.config.jax_platforms if jax is not None else None
    yield devices
    if jax is not None:
        jax.config.update("jax_platforms", platforms)


# Executor side, in process ------------------------------------------------


def test_task_reads_its_gpu_addresses_from_the_task_context():
    from sparkeras.worker.devices import task_gpu_addresses

    assert task_gpu_addresses(_Context(["1", "3"])) == ["1", "3"]
    assert task_gpu_addresses(_Context()) == []
    assert task_gpu_addresses(None) == []


def test_plan_devices_uses_every_gpu_of_the_task_or_the_cpu():
    from sparkeras.worker.devices import TaskDevices, plan_devices

    assert plan_devices(["2", "5"]) == TaskDevices(("2", "5"), 2)
    assert plan_devices(["2"], devices_per_task=1) == TaskDevices(("2",), 1)
    assert plan_devices([]) == TaskDevices((), 1)
    assert plan_devices([], devices_per_task=2) == TaskDevices((), 2)
    with pytest.raises(ValueError, match="devices_per_task=3"):
        plan_devices(["0", "1"], devices_per_task=3)


def test_gpu_task_pins_exactly_its_addresses(fresh_worker):
    pinned = fresh_worker.plan_devices(["1", "3"])
    fresh_worker.pin_devices("tensorflow", pinned)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert fresh_worker.pinned() == (("1", "3"), 2)
    fresh_worker.pin_devices("tensorflow", pinned)  # a reused worker, same GPUs: fine


def test_reused_worker_refuses_a_task_with_other_gpus(fresh_worker):
    fresh_worker.pin_devices("tensorflow", fresh_worker.plan_devices(["0"]))
    with pytest.raises(RuntimeError, match="spark.python.worker.reuse=false"):
        fresh_worker.pin_devices("tensorflow", fresh_worker.plan_devices(["1"]))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"


def test_cpu_task_hides_gpus_and_splits_the_cpu_for_jax(fresh_worker):
    user_flags = "--xla_dump_to=/tmp/x"
    os.environ["XLA_FLAGS"] = user_flags  # the fixture restores the variable
    fresh_worker.pin_devices("jax", fresh_worker.plan_devices([], devices_per_task=2))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "-1"
    assert os.environ["JAX_PLATFORMS"] == "cpu"
    assert os.environ["XLA_FLAGS"].split() == [
        "--xla_force_host_platform_device_count=2",
        user_flags,
    ]


def test_cpu_task_keeps_gpus_the_user_made_visible_to_executors(fresh_worker):
    os.environ["CUDA_VISIBLE_DEVICES"] = "0"  # spark.executorEnv.CUDA_VISIBLE_DEVICES=0
    fresh_worker.pin_devices("tensorflow", fresh_worker.plan_devices([]))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert fresh_worker.pinned() == ((), 1)


def test_merge_xla_flags_replaces_same_named_flags_and_puts_its_own_first(monkeypatch):
    from sparkeras.worker.runtime import merge_xla_flags

    monkeypatch.setenv("XLA_FLAGS", "--a=1 --xla_cpu_multi_thread_eigen=true --b")
    merge_xla_flags({"--xla_cpu_multi_thread_eigen": "false"})
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false --a=1 --b"


def test_jax_threads_follow_the_task_cpus_through_xla_flags(monkeypatch):
    from sparkeras.worker import runtime

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    runtime._limit_jax_threads(1)
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false"
    runtime._limit_jax_threads(4)
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=true"


def test_worker_with_keras_on_another_backend_fails_clearly():
    import keras

    from sparkeras.worker.runtime import prepare_process

    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    with pytest.raises(RuntimeError, match="spark.executorEnv.KERAS_BACKEND") as error:
        prepare_process(other, 1)
    assert f"driver backend={other!r}" in str(error.value)


# Driver-side checks ---------------------------------------------------------


def test_driver_refuses_gpus_in_local_mode():
    from sparkeras.options import check_devices

    conf = _Conf({"spark.task.resource.gpu.amount": "1"})
    with pytest.raises(ValueError, match="local mode does not schedule GPUs"):
        check_devices(conf, "local[2]", None, 32)


def test_driver_checks_devices_batch_size_and_worker_reuse():
    from sparkeras.options import check_devices

    gpus = {"spark.task.resource.gpu.amount": "2", "spark.executor.resource.gpu.amount": "2"}
    assert check_devices(_Conf(gpus), "spark://h:7077", None, 64) == 2
    assert check_devices(_Conf(), "local[2]", None, 33) == 1
    assert check_devices(_Conf(), "local[2]", 2, 64) == 2
    with pytest.raises(ValueError, match="Leave devices_per_task=None"):
        check_devices(_Conf(gpus), "spark://h:7077", 1, 64)
    with pytest.raises(ValueError, match="multiple of 2"):
        check_devices(_Conf(gpus), "spark://h:7077", None, 33)
    shared = {**gpus, "spark.task.resource.gpu.amount": "1"}
    with pytest.raises(ValueError, match="spark.python.worker.reuse=false"):
        check_devices(_Conf(shared), "spark://h:7077", None, 64)
    no_reuse = {**shared, "spark.python.worker.reuse": "false"}
    assert check_devices(_Conf(no_reuse), "spark://h:7077", None, 64) == 1
    with pytest.raises(ValueError, match="positive int"):
        check_devices(_Conf(), "local[2]", 0, 64)


# On Spark, in a subprocess ---------------------------------------------------


def _run_child(mode, backend, tmp_path, timeout_s=420, **env):
    import pyspark

    result_path = tmp_path / "result.json"
    shard_log = tmp_path / "shards.jsonl"
    environment = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "SPARK_HOME": os.path.dirname(pyspark.__file__),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join(filter(None, [_REPO, _HERE, os.environ.get("PYTHONPATH")])),
        "SPARKERAS_SHARD_LOG": str(shard_log),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        **env,
    }
    environment.pop("XLA_FLAGS", None)
    child = subprocess.Popen(
        [sys.executable, os.path.join(_HERE, "devices_fit_child.py"), mode, str(result_path)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its Spark JVMs go with it on a timeout
    )
    try:
        output, _ = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        output, _ = child.communicate()
    assert child.returncode == 0, output[-4000:]
    from shard_probe import read_log

    with open(result_path) as handle:
        return json.load(handle), read_log(str(shard_log))


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_devices_per_task_match_one_device(tmp_path, backend):
    if backend == "jax":
        pytest.importorskip("jax", reason='the JAX backend needs pip install -e ".[jax]"')
    result, shards = _run_child("multidevice", backend, tmp_path)
    assert [row["devices"] for row in result["one_summary"]] == [["cpu:0"]]
    assert [row["devices"] for row in result["two_summary"]] == [["cpu:0", "cpu:1"]]
    assert all(row["gpus"] == [] for row in result["two_summary"])
    # Same fit on one device and on two: same weights and losses, up to float rounding.
    assert result["weight_difference"] < 1e-4, result["weight_difference"]
    assert result["two_loss"] == pytest.approx(result["one_loss"], rel=1e-4)
    # Each device got half of every 32-row batch in the 2-device replica.
    one_pid = result["one_summary"][0]["pid"]
    two_pid = result["two_summary"][0]["pid"]
    trained = [r for r in shards if r["phase"] == "train"]
    if backend == "tensorflow":
        steps = 2 * 512 // 32
        assert sorted((r["replica"], r["rows"]) for r in trained if r["pid"] == two_pid) == (
            [(0, 16)] * steps + [(1, 16)] * steps
        )
        assert {(r["replica"], r["rows"]) for r in trained if r["pid"] == one_pid} == {(0, 32)}
    else:
        assert {(r["devices"], r["rows"]) for r in trained if r["pid"] == two_pid} == {(2, 16)}
        assert {(r["devices"], r["rows"]) for r in trained if r["pid"] == one_pid} == {(1, 32)}
    # Inference on 2 devices per task: every row, the driver model's numbers.
    assert result["predict_rows"][0] == result["predict_rows"][1]
    assert result["predict_difference"] < 1e-5
    for name, value in result["driver_evaluate"].items():
        assert result["evaluate"][name] == pytest.approx(value, abs=1e-5), name


@pytest.mark.spark
@pytest.mark.cluster
@pytest.mark.slow
def test_tasks_pin_the_fake_gpus_spark_assigns_on_local_cluster(tmp_path):
    if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
        pytest.skip("local-cluster needs Java 17+")
    result, shards = _run_child(
        "gpus",
        "tensorflow",
        tmp_path,
        SPARKERAS_FAKE_GPUS="2",
        SPARKERAS_FAKE_GPU_STATE=str(tmp_path / "gpu-state"),
    )
    assert result["worker_reuse"] == "false"  # get_spark's default for a GPU session
    summary = result["summary"]
    # Each of the 2 training tasks got one GPU of the executor's two; no GPU twice.
    assert sorted(gpu for row in summary for gpu in row["gpus"]) == ["0", "1"]
    assert all(len(row["gpus"]) == 1 for row in summary)
    # ...and pinned it: the replica's process saw only that GPU (CPU here: fake GPUs).
    by_pid = {row["pid"]: row["gpus"][0] for row in summary}
    trained = [r for r in shards if r["phase"] == "train" and r["pid"] in by_pid]
    assert trained and all(r["cuda"] == by_pid[r["pid"]] for r in trained)
    # Inference tasks pin theirs too: two concurrent tasks, two different GPUs.
    inferred = {r["pid"]: r["cuda"] for r in shards if r["phase"] == "infer"}
    inferred.pop(result["driver_pid"], None)
    assert sorted(set(inferred.values())) == ["0", "1"]
    assert 0 <= result["evaluate"]["accuracy"] <= 1
    assert result["predicted_rows"] == 128


@pytest.mark.gpu
def test_real_gpu_task_sees_only_its_gpu(tmp_path):
    if shutil.which("nvidia-smi") is None:
        pytest.skip("needs an NVIDIA GPU and its driver (nvidia-smi)")
    import keras

    backend = keras.backend.backend()
    code = (
        "from sparkeras.worker import devices\n"
        "devices.pin_devices(BACKEND, devices.plan_devices(['0']))\n"
        "print(devices.local_devices(BACKEND))\n"
    ).replace("BACKEND", repr(backend))
    completed = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "KERAS_BACKEND": backend},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert "'gpu:0'" in completed.stdout and "'gpu:1'" not in completed.stdout


def test_gpu_template_passes_the_driver_checks_and_turns_worker_reuse_off():
    from sparkeras.options import check_devices

    settings = _Conf()
    with open(os.path.join(_REPO, "conf", "spark-defaults.gpu.conf")) as handle:
        for line in handle:
            if line.strip() and not line.lstrip().startswith("#"):
                key, value = line.split(None, 1)
                settings[key] = value.strip()  # the last setting of a key wins, as in Spark
    assert settings["spark.python.worker.reuse"] == "false"
    assert check_devices(settings, "spark://h:7077", None, 64) == 1
    with pytest.raises(ValueError, match="spark.python.worker.reuse=false"):
        check_devices(_Conf({**settings, "spark.python.worker.reuse": "true"}), "yarn", None, 64)
