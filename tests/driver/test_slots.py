"""num_workers is bounded by the task slots counted from cores, not by default parallelism."""

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO_DIR, TESTS_DIR

_HERE = TESTS_DIR  # the *_child.py scripts


@pytest.mark.parametrize(
    "master, cores",
    [("local", 1), ("local[3]", 3), ("local[2,4]", 2), ("local-cluster[2, 3, 1024]", 6),
     ("spark://host:7077", None), ("yarn", None)],
)
def test_master_cores(master, cores):
    from sparkeras.slots import master_cores

    assert master_cores(master) == cores


def test_local_star_counts_the_machine():
    from sparkeras import slots

    assert slots.master_cores("local[*]") == slots._machine_cores() >= 1


@pytest.mark.spark
def test_the_shared_session_has_two_slots(spark):
    from sparkeras.slots import task_slots

    counted = task_slots(spark)
    assert (counted.slots, counted.task_cpus) == (2, 1)
    assert counted.counted == "master 'local[2]': 2 cores / spark.task.cpus=1"


def test_default_parallelism_of_one_still_fits_two_workers():
    """pytest-spark's default configuration: local[2] with spark.default.parallelism=1."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [REPO_DIR, _HERE, os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(
        [sys.executable, os.path.join(_HERE, "slots_child.py")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    line = next(x for x in completed.stdout.splitlines() if x.startswith("REPORT "))
    report = json.loads(line[len("REPORT "):])
    assert report["default_parallelism"] == 1
    assert report["slots"] == 2 and report["workers"] == 2 and report["epochs"] == 1
    assert "num_workers=3 is more than the 2 task slots" in report["error"]
    assert "master 'local[2]': 2 cores / spark.task.cpus=1" in report["error"]
