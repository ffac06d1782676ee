"""The state of Dynamic Network Surgery for one model: thresholds and masks.

Neutral module: the local Keras callback, the driver of a distributed fit
and every executor hold a `Surgery`, built from the same plain values, and
so compute the same masks from the same weights.
"""

import logging

import numpy as np

from sparkeras.pruning.masks import draws_update, ramp_scale, round_draw, thresholds, update_mask


class Surgery:
    """Thresholds and masks of the pruned kernels of one model.

    Args:
        config: dict with `c_rate`, `conv_c_rate`, `gamma`, `power`,
            `iter_stop`, `ramp` and `seed` (`DNS.get_config()`).
        kernels: `(weight index, layer name, kind)` triples, from
            `masks.prunable_kernels`.

    Example:
    >>> surgery = Surgery(DNS().get_config(), prunable_kernels(model))
    >>> surgery.start(model.get_weights())
    >>> model.set_weights(surgery.apply(model.get_weights()))
    """

    def __init__(self, config, kernels):
        self.config = dict(config)
        self.kernels = [tuple(kernel) for kernel in kernels]
        self.limits = []  # (a, b) per kernel
        self.masks = []  # uint8 arrays, one per kernel
        self.iteration = 0
        self._warned = set()  # layers already reported as wholly pruned

    @property
    def started(self):
        """Whether the thresholds have been set (pruning has begun)."""
        return bool(self.limits)

    def start(self, weights):
        """Sets each kernel's thresholds from `weights`; masks start all ones."""
        self.limits = [
            thresholds(weights[index], self._c_rate(kind)) for index, _, kind in self.kernels
        ]
        self.masks = [np.ones(np.shape(weights[index]), np.uint8) for index, _, _ in self.kernels]

    def update(self, weights, draw, iteration):
        """Updates the masks from the dense `weights` if `draw` says so; returns whether.

        The thresholds applied are the full ones times `ramp_scale` (DNS's
        `ramp`, a share of `iter_stop`).
        """
        config = self.config
        if not draws_update(draw, iteration, config["gamma"], config["power"],
                            config["iter_stop"]):
            return False
        # A checkpoint written before `ramp` existed pruned without one.
        scale = ramp_scale(iteration, config.get("ramp", 0.0) * config["iter_stop"])
        self.masks = [
            update_mask(mask, weights[index], scale * a, scale * b)
            for mask, (index, _, _), (a, b) in zip(self.masks, self.kernels, self.limits,
                                                   strict=True)
        ]
        self._warn_about_emptied_layers(iteration, scale)
        return True

    def _warn_about_emptied_layers(self, iteration, scale):
        for mask, (_, name, _), (a, b) in zip(self.masks, self.kernels, self.limits,
                                              strict=True):
            if name not in self._warned and not mask.any():
                self._warned.add(name)
                logging.getLogger("sparkeras").warning(
                    "DNS pruned every weight of layer %r at step %d (every |W| is below the "
                    "threshold %.3g); the layer passes nothing until a weight grows back past "
                    "%.3g. Start pruning from a trained model, or lower c_rate (conv_c_rate "
                    "for convolutions).", name, iteration, scale * a, scale * b)

    def after_round(self, weights, round_id, steps_per_round):
        """The mask update of a distributed fit after global round `round_id`.

        `weights` are the global (averaged) dense weights every replica got
        from that round's exchange; the draw is seeded by the round, and the
        schedule's position becomes `(round_id + 1) * steps_per_round` (one
        replica's steps), so the driver and every worker compute the same
        masks. Returns whether the masks were updated.
        """
        iteration = (round_id + 1) * steps_per_round
        updated = self.update(weights, round_draw(self.config["seed"], round_id), iteration)
        self.iteration = iteration
        return updated

    def apply(self, weights):
        """A copy of `weights` with each pruned kernel multiplied by its mask."""
        masked = list(weights)
        for mask, (index, _, _) in zip(self.masks, self.kernels, strict=True):
            masked[index] = (weights[index] * mask).astype(np.asarray(weights[index]).dtype)
        return masked

    def to_plain(self):
        """The state as plain values: a JSON-able dict and a list of mask arrays."""
        info = {"config": self.config, "kernels": [list(k) for k in self.kernels],
                "limits": [list(limit) for limit in self.limits], "iteration": self.iteration}
        return info, [np.asarray(mask, np.uint8) for mask in self.masks]

    @classmethod
    def from_plain(cls, info, masks):
        """Rebuilds a `Surgery` from `to_plain()`'s values."""
        surgery = cls(info["config"], info["kernels"])
        surgery.limits = [tuple(limit) for limit in info["limits"]]
        surgery.masks = [np.asarray(mask, np.uint8) for mask in masks]
        surgery.iteration = info["iteration"]
        return surgery

    def _c_rate(self, kind):
        return self.config["conv_c_rate" if kind == "conv" else "c_rate"]
