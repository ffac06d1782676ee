"""Prepares a Python worker for a sparkeras task: process, devices, distribution.

Executor-side module. Training and inference tasks start alike: limit the
backend's threads to the task's CPUs (`prepare_process`, before the first
`import keras`), plan the devices Spark gave the task and pin them, then
name the devices the replica spans and build the data-parallel distribution
the model is loaded and run under.

Example:
>>> setup = set_up_task(plan.backend, plan.devices_per_task)
>>> names, distribution = setup.replicas()
>>> with parallel.scope(distribution):
...     model = model_from_bytes(model_bytes)
"""

from dataclasses import dataclass

from sparkeras.worker import devices as task_devices
from sparkeras.worker.parallel import make_distribution
from sparkeras.worker.runtime import prepare_process


@dataclass(frozen=True)
class TaskSetup:
    """The devices pinned for the running task.

    Attributes:
        backend: The Keras backend, "tensorflow" or "jax".
        pinned: The `TaskDevices` pinned in this process.
    """

    backend: str
    pinned: task_devices.TaskDevices

    def replicas(self):
        """The replica's device names and the distribution that spans them.

        Returns:
            `(names, distribution)`: names such as `["cpu:0", "cpu:1"]`, and
            the object to load and run the model under (None for one device).
        """
        names = task_devices.replica_devices(self.backend, self.pinned)
        return names, make_distribution(self.backend, names)


def set_up_task(backend, devices_per_task=None):
    """Prepares this process for the running Spark task and pins its devices.

    Args:
        backend: The Keras backend of the driver.
        devices_per_task: Devices per replica on a CPU task (None: one per
            GPU of the task, or one CPU device).

    Returns:
        A `TaskSetup`.

    Example:
    >>> names, distribution = set_up_task("tensorflow").replicas()
    """
    from pyspark import TaskContext

    context = TaskContext.get()
    prepare_process(backend, context.cpus())
    pinned = task_devices.plan_devices(task_devices.task_gpu_addresses(context), devices_per_task)
    task_devices.pin_devices(backend, pinned)
    return TaskSetup(backend, pinned)
