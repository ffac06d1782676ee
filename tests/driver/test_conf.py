"""The conf/ templates parse as Spark properties files; the GPU discovery script's JSON."""

import json
import os
import shutil
import subprocess

import pytest
from helpers import REPO_DIR

_CONF = os.path.join(REPO_DIR, "conf")
_DISCOVERY = os.path.join(_CONF, "gpu-discovery.sh")


def read_properties(spark, name):
    """Loads a template the way spark-submit loads --properties-file (java.util.Properties)."""
    jvm = spark.sparkContext._jvm
    properties = jvm.java.util.Properties()
    stream = jvm.java.io.InputStreamReader(
        jvm.java.io.FileInputStream(os.path.join(_CONF, name)), "UTF-8"
    )
    try:
        properties.load(stream)
    finally:
        stream.close()
    return {key: properties.getProperty(key).strip() for key in properties.stringPropertyNames()}


@pytest.mark.spark
@pytest.mark.parametrize(
    ("name", "master"),
    [
        ("spark-defaults.local.conf", "local["),
        ("spark-defaults.standalone.conf", "spark://"),
        ("spark-defaults.yarn.conf", "yarn"),
        ("spark-defaults.kubernetes.conf", "k8s://"),
    ],
)
def test_cluster_templates_name_their_master_and_wait_for_executors(spark, name, master):
    settings = read_properties(spark, name)
    assert all(key.startswith("spark.") and value for key, value in settings.items()), settings
    assert settings["spark.master"].startswith(master)
    if master != "local[":
        assert settings["spark.scheduler.minRegisteredResourcesRatio"] == "1.0"
        assert int(settings["spark.executor.cores"]) % int(settings["spark.task.cpus"]) == 0


@pytest.mark.spark
def test_gpu_template_gives_each_task_a_share_of_the_discovered_gpus(spark):
    settings = read_properties(spark, "spark-defaults.gpu.conf")
    executor_gpus = int(settings["spark.executor.resource.gpu.amount"])
    task_gpus = int(settings["spark.task.resource.gpu.amount"])
    slots = int(settings["spark.executor.cores"]) // int(settings["spark.task.cpus"])
    assert slots * task_gpus == executor_gpus
    assert settings["spark.executor.resource.gpu.discoveryScript"].endswith("gpu-discovery.sh")


def test_gpu_discovery_prints_the_indices_nvidia_smi_lists(tmp_path):
    fake = tmp_path / "nvidia-smi"  # a stand-in that answers the script's one query
    fake.write_text('#!/bin/sh\n[ "$1" = "--query-gpu=index" ] && printf "0\\n1\\n3\\n"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    completed = subprocess.run([_DISCOVERY], env=env, capture_output=True, text=True, check=True)
    assert json.loads(completed.stdout) == {"name": "gpu", "addresses": ["0", "1", "3"]}


def test_gpu_discovery_fails_clearly_without_nvidia_smi(tmp_path):
    bash = shutil.which("bash")
    env = {**os.environ, "PATH": str(tmp_path)}
    completed = subprocess.run([bash, _DISCOVERY], env=env, capture_output=True, text=True)
    assert completed.returncode == 1 and "nvidia-smi is not on PATH" in completed.stderr


@pytest.mark.gpu
@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="needs an NVIDIA GPU")
def test_gpu_discovery_lists_every_real_gpu():
    gpus = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True)
    completed = subprocess.run([_DISCOVERY], capture_output=True, text=True, check=True)
    addresses = json.loads(completed.stdout)["addresses"]
    assert len(addresses) == len(gpus.stdout.strip().splitlines()) > 0
