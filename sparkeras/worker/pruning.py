"""Dynamic Network Surgery inside a training task.

Executor-side module. The replica computes with `W * T`: its kernels hold the
masked weights while it trains, and the dense `W` lives beside them; after
each batch the optimizer's step is added to `W` (splicing). Before an
exchange the kernels get `W` back, so the replicas average dense weights;
after it they are masked again. At an epoch's end the masks are updated from
the global weights exactly as the driver does (`sparkeras.pruning.distributed`).
"""

import numpy as np

from sparkeras.pruning.kernels import read_kernels, splice, sync_model, write_masked
from sparkeras.pruning.masks import epoch_draw
from sparkeras.pruning.surgery import Surgery


class NoPruning:
    """The hooks of `WorkerPruning`, doing nothing (a fit without pruning)."""

    def batch_hook(self, progress):
        """Returns `progress` unchanged."""
        return progress

    def before_exchange(self, model):
        """Nothing to do."""

    def after_exchange(self, model):
        """Nothing to do."""

    def epoch_end(self, model, epoch):
        """Nothing to do."""


class WorkerPruning(NoPruning):
    """One replica's masks and dense kernels.

    Args:
        plan: `TrainPlan.pruning`: `info` and `masks` of the `Surgery` and
            `epoch`, the first epoch they apply to.
        model: The replica's model, holding the global dense weights.
        start: The `register` reply (resume epoch, rounds and steps).
        worker_id: This task's partition, named in the mask records.

    Raises:
        RuntimeError: the masks of the plan are not those of the epoch the
            fit resumes at (a relaunch raced the driver's update: the next
            launch gets the current ones).
    """

    def __init__(self, plan, model, start, worker_id):
        if plan["epoch"] != start["epoch"]:
            raise RuntimeError(
                f"The pruning masks in the task's plan are those of epoch {plan['epoch']}, but "
                f"the fit resumes at epoch {start['epoch']}; the job is launched again."
            )
        self.surgery = Surgery.from_plain(plan["info"], plan["masks"])
        self._steps_per_epoch = start["rounds_per_epoch"] * start["steps_per_round"]
        self._model = model
        self._record = (plan.get("record_dir"), worker_id)
        self._variables = [model.weights[index] for index, _, _ in self.surgery.kernels]
        self.dense = read_kernels(self._variables)
        self._write_masked()

    def batch_hook(self, progress):
        """Wraps a replica's per-batch `progress` so each batch's step is spliced in."""

        def after_batch(*args):
            self.splice()
            return progress(*args) if progress is not None else False

        return after_batch

    def splice(self):
        """Adds the last step (taken at `W * T`) to the dense `W`; masks the kernels again."""
        sync_model(self._model)
        self.dense = splice(self.dense, read_kernels(self._variables), self.surgery.masks)
        self._write_masked()

    def before_exchange(self, model):
        """Puts the dense weights in the kernels: the replicas exchange `W`."""
        for variable, dense in zip(self._variables, self.dense, strict=True):
            variable.assign(dense)

    def after_exchange(self, model):
        """Takes the global dense weights; masks the kernels again."""
        self.dense = read_kernels(self._variables)
        self._write_masked()

    def epoch_end(self, model, epoch):
        """Updates the masks from the global dense weights, as the driver does."""
        surgery = self.surgery
        iteration = (epoch + 1) * self._steps_per_epoch
        weights = {index: dense for (index, _, _), dense in zip(surgery.kernels, self.dense,
                                                                strict=True)}
        surgery.update(weights, epoch_draw(surgery.config["seed"], epoch), iteration)
        surgery.iteration = iteration
        self._write_masked()
        folder, worker_id = self._record
        if folder:
            np.savez(f"{folder}/masks-worker{worker_id}-epoch{epoch}.npz", *surgery.masks)

    def _write_masked(self):
        write_masked(self._variables, self.dense, self.surgery.masks)


def make_pruning(plan, model, start, worker_id):
    """A `WorkerPruning` for `plan.pruning`, or a `NoPruning` when it is None."""
    if plan.pruning is None:
        return NoPruning()
    return WorkerPruning(plan.pruning, model, start, worker_id)
