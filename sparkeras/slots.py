"""How many tasks a Spark session runs at once: the bound on `num_workers`.

Driver-side module. A fit's training tasks wait for one another at start
(the coordinator's gang start), so `num_workers` may not exceed the task slots:
the cores Spark schedules tasks on, divided by `spark.task.cpus`. That is not
`sc.defaultParallelism`, which `spark.default.parallelism` overrides (a
`local[2]` session with `spark.default.parallelism=1` still runs 2 tasks).
"""

import re
from typing import NamedTuple

from sparkeras.session_access import default_parallelism

_LOCAL = re.compile(r"local(?:\[(\d+|\*)(?:,\s*\d+)?\])?$")
_LOCAL_CLUSTER = re.compile(r"local-cluster\[\s*(\d+)\s*,\s*(\d+)\s*,\s*\d+\s*\]$")


def check_no_speculation(spark):
    """Refuses a session that runs speculative copies of tasks, before the fit's job.

    A training task is one replica: a second copy of it would join the fit
    as the same worker. (Barrier stages never speculate; the training job is
    not one, see docs/data-path.md.)

    Example:
    >>> check_no_speculation(spark)  # spark.speculation is false by default
    """
    speculation = str(spark.conf.get("spark.speculation", "false")).strip().lower()
    if speculation == "true":
        raise ValueError(
            "This session runs speculative copies of slow tasks (spark.speculation=true), and a "
            "training task must run exactly once. Start the session that fits with "
            "spark.speculation=false (it is false by default). "
            "Received: spark.speculation=true"
        )


class TaskSlots(NamedTuple):
    """The task slots of a session, and what was counted to get them.

    Attributes:
        slots: Tasks that run at once (at least 1).
        task_cpus: `spark.task.cpus`.
        counted: What the count comes from, for error messages, e.g.
            "master 'local[2]': 2 cores / spark.task.cpus=1".
    """

    slots: int
    task_cpus: int
    counted: str


def task_slots(spark):
    """Counts the task slots of a session from its cores and `spark.task.cpus`.

    A classic session asks Spark's scheduler, which counts the cores of the
    registered executors (of the `local[N]` master in local mode) as the
    barrier scheduler itself does. Without executors yet, or without a JVM
    handle (Spark Connect), the count comes from the master URL or
    `spark.executor.instances` x `spark.executor.cores`, and last from the
    default parallelism.

    Example:
    >>> task_slots(sparkeras.get_spark("local[2]")).slots
    2
    """
    conf = spark.conf
    task_cpus = int(conf.get("spark.task.cpus", "1"))
    master = conf.get("spark.master", "")
    per = f" / spark.task.cpus={task_cpus}"
    scheduled = _scheduler_slots(spark)
    if scheduled:
        slots, executors = scheduled
        where = f"master {master!r}" if master.startswith("local") else f"{executors} executors"
        return TaskSlots(slots, task_cpus, f"{where}: {slots * task_cpus} cores{per}")
    cores = master_cores(master)
    if cores is not None:
        return TaskSlots(max(1, cores // task_cpus), task_cpus,
                         f"master {master!r}: {cores} cores{per}")
    instances, executor_cores = (conf.get(f"spark.executor.{key}", None)
                                 for key in ("instances", "cores"))
    if instances and executor_cores:
        cores = int(instances) * int(executor_cores)
        return TaskSlots(max(1, cores // task_cpus), task_cpus,
                         f"spark.executor.instances={instances} x spark.executor.cores="
                         f"{executor_cores} (no executor has registered yet){per}")
    parallelism = default_parallelism(spark)
    return TaskSlots(max(1, parallelism // task_cpus), task_cpus,
                     f"Spark's default parallelism {parallelism} (no executor has registered "
                     f"yet){per}")


def master_cores(master):
    """The task cores a local master URL gives, or None for a cluster master.

    Example:
    >>> master_cores("local[4]"), master_cores("local-cluster[2, 3, 1024]")
    (4, 6)
    """
    local = _LOCAL.match(master)
    if local:
        count = local.group(1) or "1"
        return _machine_cores() if count == "*" else int(count)
    cluster = _LOCAL_CLUSTER.match(master)
    if cluster:
        return int(cluster.group(1)) * int(cluster.group(2))
    return None


def _machine_cores():
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _scheduler_slots(spark):
    """(slots, executors) from Spark's scheduler, or None without a JVM or executors.

    `maxNumConcurrentTasks` is what Spark checks a barrier stage against.
    """
    try:
        context = spark.sparkContext._jsc.sc()
        profile = context.resourceProfileManager().defaultResourceProfile()
        slots = int(context.maxNumConcurrentTasks(profile))
        executors = max(1, int(context.getExecutorMemoryStatus().size()) - 1)
    except Exception:  # Spark Connect or another JVM-less session: count from the conf
        return None
    return (slots, executors) if slots > 0 else None
