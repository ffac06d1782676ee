"""Dynamic Network Surgery in a distributed fit: the driver's side.

Driver-side module. The masks change at every exchange: after each
synchronous round the coordinator hands the global (averaged) dense weights
to `DriverPruning.round_end`, and every worker (`sparkeras.worker.pruning`)
does the same with the identical average it received, by
`Surgery.after_round`: the same rule, the same draw (seeded by the DNS seed
and the global round number), the same schedule position. So the driver and
the workers agree on the masks without sending them. Between exchanges every
replica trains with those masks, keeping and exchanging its dense weights
(masked entries included: splicing survives the averaging). The driver's
model ends with the global dense weights times the global masks.

The masks after the last completed round travel to the workers in the task's
plan (`TrainPlan.pruning`, a dict the driver updates after every round; a
relaunched job pickles it afresh), and into checkpoints.

Diagnostic: with the environment variable `SPARKERAS_PRUNING_RECORD` set to
a folder on the driver, every worker writes its masks there after each epoch
(`masks-worker{id}-epoch{n}.npz`), to check that the replicas agree.
"""

import os

import numpy as np

from sparkeras.pruning.masks import prunable_kernels
from sparkeras.pruning.surgery import Surgery


def check_pruning(pruning, model, mode):
    """Returns `pruning` if a distributed fit can use it; raises a clear error otherwise.

    Example:
    >>> check_pruning(DNS(), model, "synchronous")
    """
    from sparkeras.pruning.callbacks import DNS

    if pruning is None:
        return None
    if not isinstance(pruning, DNS):
        raise TypeError(
            "pruning must be a sparkeras.pruning.DNS; distributed fits prune with Dynamic "
            "Network Surgery only (use magnitude(...) as a callback of a local model.fit). "
            f"Received: pruning={type(pruning).__name__}"
        )
    if mode != "synchronous":
        raise ValueError(
            "Pruning needs mode='synchronous': every replica must train with the same masks "
            "between exchanges, and asynchronous updates would mix weights pruned with "
            f"different masks. Use mode='synchronous'. Received: mode={mode!r}"
        )
    prunable_kernels(model, pruning.layers)
    return pruning


class DriverPruning:
    """The driver's copy of a distributed fit's pruning state.

    Args:
        pruning: The `DNS` the user passed; it ends holding the global state,
            so a later local or distributed fit continues from it.
        model: The driver's model; its kernels are set back to the dense
            weights when `pruning` already pruned it.
        resume_state: A loaded checkpoint, or None.
    """

    def __init__(self, pruning, model, resume_state=None):
        self._pruning = pruning
        kernels = prunable_kernels(model, pruning.layers)
        saved = (resume_state or {}).get("pruning")
        if saved is not None:
            info, arrays = saved
            surgery = Surgery.from_plain(info, arrays)
        elif pruning.surgery is not None and pruning.surgery.kernels == kernels:
            surgery = pruning.surgery
            weights = model.get_weights()
            for (index, _, _), mask, dense in zip(kernels, surgery.masks, pruning.dense,
                                                  strict=True):
                weights[index] = np.where(mask, weights[index], dense)
            model.set_weights(weights)
        else:
            weights = (resume_state or {}).get("weights") or model.get_weights()
            surgery = Surgery(pruning.get_config(), kernels)
            surgery.start(weights)
            surgery.update(weights, 0.0, surgery.iteration)
        self.surgery = surgery
        info, masks = surgery.to_plain()
        # `round`: the global round these masks apply to; None until the first completes.
        self.plan = {"info": info, "masks": masks, "round": None,
                     "record_dir": os.environ.get("SPARKERAS_PRUNING_RECORD")}

    def round_end(self, round_id, weights, steps_per_round):
        """Updates the masks after global round `round_id` from its averaged `weights`.

        The coordinator calls it (a server thread) once per completed round,
        before any worker gets the average: the workers make the same update.
        """
        self.surgery.after_round(weights, round_id, steps_per_round)
        info, masks = self.surgery.to_plain()
        self.plan.update(info=info, masks=masks, round=round_id + 1)

    def epoch_end(self, weights):
        """The weights the driver's model shows after an epoch: the global `weights` masked."""
        return self.surgery.apply(weights)

    def state(self):
        """The state a checkpoint keeps: `(info, mask arrays)`."""
        return self.surgery.to_plain()

    def finish(self, weights):
        """Hands the global state to the user's `DNS`; returns the masked weights."""
        self._pruning.surgery = self.surgery
        self._pruning.dense = [np.array(weights[index]) for index, _, _ in self.surgery.kernels]
        return self.surgery.apply(weights)
