"""Pins a task's replica to the devices Spark's scheduler gave it.

Executor-side module (also used by `sparkeras.multigpu` on one machine).
GPUs come from Spark's resource scheduling: a task reads its addresses from
`TaskContext.resources()["gpu"]`, and `pin_devices` makes exactly those GPUs
visible (`CUDA_VISIBLE_DEVICES`) before the backend initialises its devices.
Without GPU resources the replica runs on the CPU, with every GPU hidden
(unless CUDA_VISIBLE_DEVICES was set for the executors: that choice is kept).

A backend picks its devices once per process. A Python worker that Spark
reuses for a later task keeps the devices of its first task, so a task whose
devices differ from those its worker already started with fails with a clear
error: sessions that schedule GPUs (or split the CPU into several devices)
run with `spark.python.worker.reuse=false`, where every task gets a fresh
worker forked from the Python daemon (which has Keras imported, not started).
"""

import logging
import os
import sys
from typing import NamedTuple

from sparkeras.worker.runtime import merge_xla_flags

logger = logging.getLogger(__name__)

GPU_RESOURCE = "gpu"

# What this Python worker pinned: (GPU addresses, number of devices). Set by
# the first task; a backend cannot change its devices after that.
_pinned = None


class TaskDevices(NamedTuple):
    """The devices one task's replica uses.

    Attributes:
        gpus: Spark GPU addresses pinned (process-wide `CUDA_VISIBLE_DEVICES`);
            empty for a CPU task.
        count: Devices the replica spans: one per GPU, or the CPU devices
            (1, or `devices_per_task` logical CPU devices).
    """

    gpus: tuple
    count: int


def task_gpu_addresses(context):
    """The GPU addresses Spark's scheduler gave the running task.

    Args:
        context: The task's `pyspark.TaskContext`, or None outside a task.

    Returns:
        A list of address strings, e.g. `["0", "3"]`; empty without GPU
        resources (`spark.task.resource.gpu.amount` unset).

    Example:
    >>> task_gpu_addresses(TaskContext.get())
    ['1']
    """
    if context is None:
        return []
    info = context.resources().get(GPU_RESOURCE)
    return [str(address) for address in info.addresses] if info is not None else []


def plan_devices(gpu_addresses, devices_per_task=None):
    """The `TaskDevices` of a task with these GPUs and this setting.

    Args:
        gpu_addresses: The task's Spark GPU addresses (may be empty).
        devices_per_task: None: one device per GPU, or one CPU device. An int
            n on a CPU task: n logical CPU devices (the multi-device code path
            without GPUs). With GPUs it must equal their number.

    Raises:
        ValueError: `devices_per_task` disagrees with the task's GPUs.

    Example:
    >>> plan_devices(["2", "3"])
    TaskDevices(gpus=('2', '3'), count=2)
    """
    gpus = tuple(str(address) for address in gpu_addresses)
    if gpus:
        if devices_per_task not in (None, len(gpus)):
            raise ValueError(
                f"Spark gave this task {len(gpus)} GPU(s) ({', '.join(gpus)}) but "
                f"devices_per_task={devices_per_task}. Leave devices_per_task=None to use "
                "every GPU of the task, or set spark.task.resource.gpu.amount to "
                f"{devices_per_task}. Received: devices_per_task={devices_per_task}"
            )
        return TaskDevices(gpus, len(gpus))
    return TaskDevices((), int(devices_per_task or 1))


def pin_devices(backend, devices):
    """Restricts this process to `devices` before the backend starts.

    Call it before the first Keras computation of the process (a task calls
    it right after `prepare_process`). A later call with the same devices
    (a reused Python worker) does nothing; one with other devices raises.

    Args:
        backend: "tensorflow" or "jax".
        devices: A `TaskDevices`.

    Raises:
        RuntimeError: This process already started its backend with other
            devices (a reused Python worker); the message names the fix.

    Example:
    >>> pin_devices("tensorflow", plan_devices(["1"]))
    """
    global _pinned
    wanted = (tuple(devices.gpus), int(devices.count))
    if _pinned is not None:
        if _pinned != wanted:
            raise RuntimeError(_reuse_message(_pinned, wanted))
        return
    if devices.gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices.gpus)
    elif not os.environ.get("CUDA_VISIBLE_DEVICES"):
        # No GPU from Spark: none for this task either, so tasks never share one.
        # (A CUDA_VISIBLE_DEVICES set for the executors, as in local mode on a
        # GPU workstation, is the user's explicit choice and is kept.)
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        if backend == "jax":
            _jax_on_cpu()
    if not devices.gpus and devices.count > 1:
        _split_cpu(backend, devices.count, wanted)
    _pinned = wanted


def pinned():
    """What this process pinned: `(gpu addresses, device count)`, or None."""
    return _pinned


def _jax_on_cpu():
    """JAX without its GPU plugin; JAX reads JAX_PLATFORMS when it is imported."""
    os.environ["JAX_PLATFORMS"] = "cpu"
    jax = sys.modules.get("jax")
    if jax is not None:  # imported already (the preloading daemon), not started
        jax.config.update("jax_platforms", "cpu")


def _split_cpu(backend, count, wanted):
    """Makes the CPU `count` devices: TF logical devices, XLA host devices."""
    if backend == "jax":
        merge_xla_flags({"--xla_force_host_platform_device_count": str(count)})
        return
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
            )
        except RuntimeError:  # TensorFlow's runtime already started in this process
            if len(tf.config.list_logical_devices("CPU")) != count:
                raise RuntimeError(_reuse_message(("?", "?"), wanted)) from None
        return
    raise ValueError(
        "Several devices per task need the tensorflow or jax backend. "
        f"Received: backend={backend!r}"
    )


def local_devices(backend):
    """The devices this process' backend sees, GPUs first, as `"gpu:0"` names.

    GPUs when there are any, else the CPU devices (logical ones included).
    Starts the backend.

    Example:
    >>> local_devices("tensorflow")
    ['cpu:0']
    """
    if backend == "tensorflow":
        import tensorflow as tf

        found = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return [
            f"{device.device_type.lower()}:{device.name.rsplit(':', 1)[-1]}" for device in found
        ]
    if backend == "jax":
        import jax

        found = jax.devices()
        return [f"{device.platform}:{device.id}" for device in found]
    return ["cpu:0"]


def replica_devices(backend, devices):
    """The process-local names of the devices a task's replica spans.

    Checks that the backend sees what was pinned: a GPU task whose backend
    finds no GPU (no driver, a CPU-only build) runs on one CPU device, with a
    warning; any other mismatch raises.

    Example:
    >>> replica_devices("jax", plan_devices([], 2))
    ['cpu:0', 'cpu:1']
    """
    found = local_devices(backend)
    if devices.gpus and not any(name.startswith("gpu:") for name in found):
        logger.warning(
            "Spark gave this task GPU(s) %s but %s sees none (no NVIDIA driver, or a CPU-only "
            "build of the backend): the replica runs on the CPU.",
            ", ".join(devices.gpus),
            backend,
        )
        return found[:1]
    if len(found) < devices.count:
        raise RuntimeError(
            f"The replica should span {devices.count} devices but {backend} sees "
            f"{len(found)} ({', '.join(found)}). The backend started before the devices were "
            "set: run with spark.python.worker.reuse=false. "
            f"Received: devices={found}"
        )
    return found[: devices.count]


def _reuse_message(had, wanted):
    return (
        "This Spark Python worker already started its Keras backend on other devices for "
        "an earlier task, and a backend cannot change its devices. Set "
        "spark.python.worker.reuse=false so that every task starts in a fresh Python worker. "
        f"Received: task devices (gpus, count)={wanted}, worker devices={had}"
    )
