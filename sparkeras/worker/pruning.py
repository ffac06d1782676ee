"""Dynamic Network Surgery inside a training task.

Executor-side module. The replica computes with `W * T`: its kernels hold the
masked weights while it trains, and the dense `W` lives beside them; after
each batch the optimizer's step is added to `W` (splicing). Before an
exchange the kernels get `W` back, so the replicas average dense weights;
after it the masks are updated from the global weights exactly as the driver
does (`sparkeras.pruning.distributed`), and the kernels masked again.
"""

import numpy as np

from sparkeras.pruning.kernels import read_kernels, splice, sync_model, write_masked
from sparkeras.pruning.surgery import Surgery


class NoPruning:
    """The hooks of `WorkerPruning`, doing nothing (a fit without pruning)."""

    def batch_hook(self, progress):
        """Returns `progress` unchanged."""
        return progress

    def before_exchange(self, model):
        """Nothing to do."""

    def after_exchange(self, model, round_id):
        """Nothing to do."""

    def epoch_end(self, model, epoch):
        """Nothing to do."""


class WorkerPruning(NoPruning):
    """One replica's masks and dense kernels.

    Args:
        plan: `TrainPlan.pruning`: `info` and `masks` of the `Surgery` and
            `round`, the global round they apply to (None: the fit's first).
        model: The replica's model, holding the global dense weights.
        start: The `register` reply (resume epoch, rounds and steps).
        worker_id: This task's partition, named in the mask records.

    Raises:
        RuntimeError: the masks of the plan are not those of the round the
            fit resumes at (a relaunch raced the driver's update: the next
            launch gets the current ones).
    """

    def __init__(self, plan, model, start, worker_id):
        resume_round = start["epoch"] * start["rounds_per_epoch"] + start["round"]
        if plan["round"] is not None and plan["round"] != resume_round:
            raise RuntimeError(
                f"The pruning masks in the task's plan are those of round {plan['round']}, but "
                f"the fit resumes at round {resume_round}; the job is launched again."
            )
        self.surgery = Surgery.from_plain(plan["info"], plan["masks"])
        self._steps_per_round = start["steps_per_round"]
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

    def after_exchange(self, model, round_id):
        """Takes the global dense weights, updates the masks as the driver does; masks again."""
        self.dense = read_kernels(self._variables)
        weights = {index: dense for (index, _, _), dense in zip(self.surgery.kernels, self.dense,
                                                                strict=True)}
        self.surgery.after_round(weights, round_id, self._steps_per_round)
        self._write_masked()

    def epoch_end(self, model, epoch):
        """Records the masks when `SPARKERAS_PRUNING_RECORD` named a folder."""
        folder, worker_id = self._record
        if folder:
            np.savez(f"{folder}/masks-worker{worker_id}-epoch{epoch}.npz", *self.surgery.masks)

    def _write_masked(self):
        write_masked(self._variables, self.dense, self.surgery.masks)


def make_pruning(plan, model, start, worker_id):
    """A `WorkerPruning` for `plan.pruning`, or a `NoPruning` when it is None."""
    if plan.pruning is None:
        return NoPruning()
    return WorkerPruning(plan.pruning, model, start, worker_id)
