"""What pruning left: `report(model)` and `strip(model)`.

Neutral module. Both read the model's kernels as they are: a model trained
with a pruning callback, or by `SparkModel(..., pruning=...)`, holds `W * T`,
so its pruned weights are zeros.
"""

import keras
import numpy as np

from sparkeras.pruning.masks import prunable_kernels


class PruningReport(dict):
    """`report`'s dict, printed as a table.

    Keys: `layers` (per layer `kept`, `total`, `pruned_fraction`), `kept`,
    `total` and `compression` (total / kept) over every prunable kernel.
    """

    def __str__(self):
        width = max([5, *(len(name) for name in self["layers"])])
        lines = [f"{'layer':<{width}}  {'kept':>9}  {'total':>9}  {'pruned':>7}"]
        for name, row in self["layers"].items():
            lines.append(f"{name:<{width}}  {row['kept']:>9}  {row['total']:>9}  "
                         f"{row['pruned_fraction']:>7.2%}")
        lines.append(f"{'all':<{width}}  {self['kept']:>9}  {self['total']:>9}  "
                     f"{1 - self['kept'] / self['total']:>7.2%}")
        lines.append(f"compression: {self['compression']:.1f}x")
        return "\n".join(lines)


def _model_of(model):
    return getattr(model, "model", None) if not isinstance(model, keras.Model) else model


def report(model):
    """Weights kept and pruned per prunable layer, and the model's compression.

    Args:
        model: A Keras model (or a `SparkModel`).

    Returns:
        A `PruningReport` (a dict; `print` shows a table).

    Example:
    >>> r = sparkeras.pruning.report(model)
    >>> r["compression"], r["layers"]["dense"]["pruned_fraction"]
    (24.3, 0.96)
    >>> print(r)
    """
    model = _model_of(model)
    weights = model.get_weights()
    layers = {}
    for index, name, _ in prunable_kernels(model):
        total = int(weights[index].size)
        kept = int(np.count_nonzero(weights[index]))
        layers[name] = {"kept": kept, "total": total, "pruned_fraction": 1 - kept / total}
    kept = sum(row["kept"] for row in layers.values())
    total = sum(row["total"] for row in layers.values())
    return PruningReport(layers=layers, kept=kept, total=total,
                         compression=total / kept if kept else float("inf"))


def strip(model):
    """A plain Keras model with the pruned weights as zeros, and nothing of sparkeras.

    The copy saves and loads as `.keras` without importing sparkeras; it is
    compiled as `model` was.

    Example:
    >>> plain = sparkeras.pruning.strip(model)
    >>> plain.save("pruned.keras")   # keras.saving.load_model("pruned.keras") anywhere
    """
    model = _model_of(model)
    prunable_kernels(model)  # the same clear error for a model with nothing to prune
    plain = keras.models.clone_model(model)
    plain.set_weights(model.get_weights())
    compile_config = model.get_compile_config() if model.compiled else None
    if compile_config:
        plain.compile_from_config(compile_config)
    return plain
