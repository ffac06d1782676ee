"""A real Spark standalone cluster on 127.0.0.1: one master, two 1-core workers.

Started from the installed pyspark (`SPARK_HOME` is the package folder), each
daemon in its own process group, and stopped by group, so the executors they
launched go with them. Drivers of this cluster run in subprocesses: the test
process already holds the `spark` fixture's local SparkContext.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_START_TIMEOUT_S = 180


@dataclass(frozen=True)
class StandaloneCluster:
    """Where the cluster listens and how to run a driver against it.

    Attributes:
        master_url: `spark://127.0.0.1:PORT`.
        web_url: The master's web UI, whose `/json/` shows workers and apps.
        spark_home: The pyspark package folder (its `bin/` has spark-submit).
        env: Environment for driver subprocesses (loopback, this repo on PYTHONPATH).
    """

    master_url: str
    web_url: str
    spark_home: str
    env: dict

    def state(self):
        """The master's JSON status: workers, active and completed apps."""
        with urllib.request.urlopen(f"{self.web_url}/json/", timeout=5) as response:
            return json.load(response)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(conf_dir):
    import pyspark

    env = dict(os.environ)
    env.update(
        SPARK_HOME=os.path.dirname(pyspark.__file__),
        SPARK_CONF_DIR=conf_dir,
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    return env


def _stop(process):
    """Stops a daemon and everything it started (its process group)."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_until(check, what, logs):
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(1)
    tails = "\n".join(f"--- {path}\n{open(path).read()[-3000:]}" for path in logs)
    raise RuntimeError(f"The standalone cluster did not come up: {what}.\n{tails}")


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory):
    """Starts a master and two workers (1 core, 1g each); stops them after the session."""
    if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
        pytest.skip("a standalone cluster needs Java 17+")
    folder = tmp_path_factory.mktemp("standalone")
    conf_dir = folder / "conf"
    conf_dir.mkdir()
    env = _environment(str(conf_dir))
    spark_class = os.path.join(env["SPARK_HOME"], "bin", "spark-class")
    master_port, web_port = _free_port(), _free_port()
    master_url = f"spark://127.0.0.1:{master_port}"
    commands = [
        [
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(master_port),
            "--webui-port",
            str(web_port),
        ],
    ]
    for index in range(2):
        work_dir = folder / f"worker{index}"
        work_dir.mkdir()
        commands.append(
            [
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--port",
                str(_free_port()),
                "--webui-port",
                str(_free_port()),
                "--cores",
                "1",
                "--memory",
                "1g",
                "--work-dir",
                str(work_dir),
                master_url,
            ]
        )
    cluster = StandaloneCluster(master_url, f"http://127.0.0.1:{web_port}", env["SPARK_HOME"], env)
    processes, logs = [], []
    try:
        for index, arguments in enumerate(commands):
            log_path = str(folder / f"daemon{index}.log")
            logs.append(log_path)
            with open(log_path, "wb") as log:
                processes.append(
                    subprocess.Popen(
                        [spark_class, *arguments],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            if index == 0:
                _wait_until(lambda: cluster.state()["status"] == "ALIVE", "master alive", logs)
        _wait_until(
            lambda: sum(w["state"] == "ALIVE" for w in cluster.state()["workers"]) == 2,
            "two workers registered",
            logs,
        )
        yield cluster
    finally:
        for process in reversed(processes):
            _stop(process)
