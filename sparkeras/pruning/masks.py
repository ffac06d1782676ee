"""The arithmetic of pruning masks, on numpy arrays.

Neutral module: the Keras callbacks, the driver and the executors all compute
masks with these functions, so every replica and the driver agree bit for bit.

Dynamic Network Surgery (Guo, Yao and Chen, NIPS 2016): per layer, with mu
and sigma the mean and standard deviation of |W| when pruning starts,
`a = 0.9 * max(mu + c_rate * sigma, 0)` and `b = 1.1 * max(mu + c_rate * sigma, 0)`;
an entry of the mask T becomes 0 where |W| < a, 1 where |W| >= b, and keeps
its value in between. The masks are updated with probability
`(1 + gamma * iteration) ** (-power)`, and never from `iter_stop` on.

sparkeras adds one thing to the paper: the thresholds can rise linearly from
0 to `a` and `b` over the first `ramp * iter_stop` steps (`ramp_scale`), so a
layer is pruned gradually and its kept weights grow while the others go,
instead of losing most of them at the first step.
"""

import numpy as np

# Layers whose `kernel` is pruned, and which c_rate applies to each kind.
_CONV_CLASSES = ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
                 "Conv3DTranspose", "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D",
                 "DepthwiseConv2D")
_DENSE_CLASSES = ("Dense", "EinsumDense")


def thresholds(weights, c_rate):
    """The pruning and splicing thresholds `(a, b)` of one kernel.

    Example:
    >>> thresholds(np.array([1.0, -2.0, 3.0, -4.0]), 0.0)   # mu = 2.5
    (2.25, 2.75)
    """
    magnitude = np.abs(np.asarray(weights, dtype=np.float64))
    level = max(float(magnitude.mean() + c_rate * magnitude.std()), 0.0)
    return 0.9 * level, 1.1 * level


def update_mask(mask, weights, a, b):
    """The new mask: 0 where |W| < a, 1 where |W| >= b, `mask` in between.

    Example:
    >>> update_mask(np.array([1, 0, 1]), np.array([0.1, 0.9, 0.5]), 0.4, 0.6)
    array([0, 1, 1], dtype=uint8)
    """
    magnitude = np.abs(weights)
    new = np.asarray(mask, dtype=np.uint8).copy()
    new[magnitude < a] = 0
    new[magnitude >= b] = 1
    return new


def update_probability(iteration, gamma, power):
    """The probability `(1 + gamma * iteration) ** (-power)` of a mask update.

    Example:
    >>> update_probability(10_000, 1e-4, 1.0)
    0.5
    """
    return (1.0 + gamma * iteration) ** (-power)


def ramp_scale(iteration, ramp_steps):
    """The share of its full thresholds a DNS update applies at `iteration`.

    Rises linearly to 1 at step `ramp_steps - 1`; 1 throughout when
    `ramp_steps` is under 1 (the paper's thresholds from the first step).

    Example:
    >>> ramp_scale(99, 400), ramp_scale(399, 400), ramp_scale(0, 0)
    (0.25, 1.0, 1.0)
    """
    if ramp_steps < 1:
        return 1.0
    return min(1.0, (iteration + 1) / ramp_steps)


def draws_update(draw, iteration, gamma, power, iter_stop):
    """Whether a uniform `draw` in [0, 1) updates the masks at `iteration`."""
    return iteration < iter_stop and draw < update_probability(iteration, gamma, power)


def round_draw(seed, round_id):
    """The uniform draw that decides a distributed fit's mask update after a round.

    Seeded by the DNS seed and the fit's global round number only, so the
    driver and every worker draw the same number without talking.

    Example:
    >>> round_draw(0, 7) == round_draw(0, 7) != round_draw(0, 8)
    True
    """
    return float(np.random.default_rng([int(seed), int(round_id), 0x444E53]).random())


def polynomial_sparsity(step, final_sparsity, begin_step, end_step, exponent=3):
    """The magnitude schedule's target sparsity at `step` (0 before `begin_step`).

    Example:
    >>> polynomial_sparsity(50, 0.9, 0, 100)
    0.7875
    """
    if step < begin_step:
        return 0.0
    progress = min(1.0, (step - begin_step) / max(1, end_step - begin_step))
    return final_sparsity * (1.0 - (1.0 - progress) ** exponent)


def magnitude_mask(weights, sparsity):
    """A mask keeping the `1 - sparsity` largest |W| of one kernel.

    Example:
    >>> magnitude_mask(np.array([0.1, -0.5, 0.3, 0.2]), 0.5)
    array([0, 1, 1, 0], dtype=uint8)
    """
    magnitude = np.abs(weights).ravel()
    pruned = int(round(sparsity * magnitude.size))
    mask = np.ones(magnitude.size, dtype=np.uint8)
    if pruned:
        mask[np.argsort(magnitude, kind="stable")[:pruned]] = 0
    return mask.reshape(np.shape(weights))


def prunable_kernels(model, layers=None):
    """The kernels to prune, as `(weight index, layer name, kind)` triples.

    `weight index` is the kernel's position in `model.get_weights()`; `kind`
    is "conv" or "dense". `layers`, layer names, narrows the choice.

    Raises:
        ValueError: a named layer is missing or has no prunable kernel, or
            the model has no Dense or convolution layer.
    """
    by_variable = {id(variable): index for index, variable in enumerate(model.weights)}
    found = {}
    for layer in _all_layers(model):
        name = type(layer).__name__
        kind = "conv" if name in _CONV_CLASSES else "dense" if name in _DENSE_CLASSES else None
        kernel = _kernel_of(layer)
        if kind is not None and kernel is not None and id(kernel) in by_variable:
            found[layer.name] = (by_variable[id(kernel)], layer.name, kind)
    if layers is not None:
        unknown = [name for name in layers if name not in found]
        if unknown:
            raise ValueError(
                f"Layer {unknown[0]!r} is not a prunable layer of the model (prunable: "
                f"{sorted(found) or 'none'}). Name Dense or convolution layers, or pass "
                f"layers=None for all of them. Received: layers={list(layers)!r}"
            )
        found = {name: found[name] for name in layers}
    if not found:
        raise ValueError(
            "The model has no prunable layer: pruning applies to the kernels of Dense and "
            "convolution layers. Add one, or train without pruning. Received: model with "
            f"layers {[type(layer).__name__ for layer in _all_layers(model)]}"
        )
    return sorted(found.values())


def _kernel_of(layer):
    for attribute in ("kernel", "depthwise_kernel"):
        try:
            kernel = getattr(layer, attribute, None)
        except (AttributeError, ValueError):
            kernel = None
        if kernel is not None:
            return kernel
    return None


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
