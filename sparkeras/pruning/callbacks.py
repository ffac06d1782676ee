"""Pruning as Keras callbacks: `DNS` (Dynamic Network Surgery) and `magnitude`.

Neutral module: the callbacks run wherever `model.fit` runs, on either
backend. A pruned layer computes with `W * T`; the callback keeps the dense
`W` in a side copy. After every training batch it takes the optimizer's step
on the kernel (`K - W * T`, the update computed at the masked weights) and
adds it to the dense `W`, masked entries included, so a pruned weight can grow
back ("splicing"); then it may update the masks, and writes `W * T` into the
kernel for the next batch. Between batches, and when `fit` returns, the
model's kernels hold `W * T`: evaluation, prediction and saving see the
pruned model.
"""

import numbers

import keras
import numpy as np

from sparkeras.pruning.kernels import read_kernels, splice, write_masked
from sparkeras.pruning.masks import magnitude_mask, polynomial_sparsity, prunable_kernels
from sparkeras.pruning.surgery import Surgery


def _number(name, value, low=None, integer=False, high=None):
    kind = numbers.Integral if integer else numbers.Real
    if (not isinstance(value, kind) or isinstance(value, bool)
            or (low is not None and value < low) or (high is not None and value > high)):
        wanted = "an int" if integer else "a number"
        bounds = (f" in [{low}, {high}]" if high is not None
                  else "" if low is None else f" >= {low}")
        raise ValueError(
            f"A pruning setting is out of range: {name} must be {wanted}{bounds}. "
            f"Received: {name}={value!r}"
        )
    return value


class DNS(keras.callbacks.Callback):
    """Dynamic Network Surgery pruning (Guo, Yao and Chen, NIPS 2016).

    Prunes the kernels of Dense and convolution layers while the model
    trains: a weight is masked when |W| falls below
    `a = 0.9 * max(mu + c * sigma, 0)` and spliced back when it reaches
    `b = 1.1 * max(mu + c * sigma, 0)`, mu and sigma being the mean and
    deviation of the layer's |W| when pruning starts. Masked weights keep
    receiving gradient steps. Masks are updated after each step with
    probability `(1 + gamma * iteration) ** (-power)`, never from `iter_stop`
    steps on (the model then retrains with fixed masks). Unlike the paper,
    the thresholds rise linearly from 0 to `a` and `b` over the first
    `ramp * iter_stop` steps (`ramp=0` applies them from the first step).

    Args:
        c_rate: c for Dense layers (>= 0 prunes more than the mean |W|).
        conv_c_rate: c for convolution layers.
        gamma: Decay of the update probability.
        power: Exponent of the update probability.
        iter_stop: Training steps after which masks no longer change.
        ramp: Share of `iter_stop`, in [0, 1], over which the thresholds
            rise to their full value.
        layers: Names of the layers to prune; None for every Dense and
            convolution layer.
        seed: Seed of the update draws.

    Example:
    >>> pruning = DNS()
    >>> model.fit(x, y, epochs=20, callbacks=[pruning])
    >>> print(sparkeras.pruning.report(model))
    """

    def __init__(self, c_rate=7.0, conv_c_rate=2.0, gamma=1e-4, power=1.0, iter_stop=1000,
                 ramp=0.5, layers=None, seed=0):
        super().__init__()
        self.c_rate = _number("c_rate", c_rate, low=0)
        self.conv_c_rate = _number("conv_c_rate", conv_c_rate, low=0)
        self.gamma = _number("gamma", gamma, low=0)
        self.power = _number("power", power, low=0)
        self.iter_stop = _number("iter_stop", iter_stop, low=0, integer=True)
        self.ramp = _number("ramp", ramp, low=0, high=1)
        self.seed = _number("seed", seed, integer=True)
        if layers is not None and (isinstance(layers, str) or not all(
                isinstance(name, str) for name in layers)):
            raise ValueError(
                "layers must be a list of layer names, or None for every Dense and "
                f"convolution layer. Received: layers={layers!r}"
            )
        self.layers = None if layers is None else list(layers)
        self.surgery = None
        self.dense = None  # the dense kernels W, one per pruned kernel
        self._variables = None
        self._rng = np.random.default_rng(seed)

    def get_config(self):
        """The constructor's arguments as a dict.

        Example:
        >>> DNS(**DNS(c_rate=3.0).get_config()).c_rate
        3.0
        """
        return {"c_rate": self.c_rate, "conv_c_rate": self.conv_c_rate, "gamma": self.gamma,
                "power": self.power, "iter_stop": self.iter_stop, "ramp": self.ramp,
                "layers": self.layers, "seed": self.seed}

    def start(self, model):
        """Begins (or continues) pruning `model`; its kernels then hold `W * T`.

        `fit` calls it through `on_train_begin`. A second `fit` with the same
        callback continues with the same thresholds, masks and dense weights,
        unless the kernels were changed in between (the kept weights are then
        taken from the model).
        """
        kernels = prunable_kernels(model, self.layers)
        self._variables = [model.weights[index] for index, _, _ in kernels]
        current = read_kernels(self._variables)
        if self.surgery is None or self.surgery.kernels != kernels:
            self.surgery = Surgery(self.get_config(), kernels)
            self.surgery.start({i: w for (i, _, _), w in zip(kernels, current, strict=True)})
            self.dense = current
        else:
            self.dense = [np.where(mask, kernel, dense)
                          for mask, kernel, dense in zip(self.surgery.masks, current, self.dense,
                                                         strict=True)]
        self._maybe_update()
        write_masked(self._variables, self.dense, self.surgery.masks)

    def on_train_begin(self, logs=None):
        self.start(self.model)

    def on_train_batch_end(self, batch, logs=None):
        self.model  # noqa: B018 - on JAX, reading `model` brings the step's weights back
        stepped = read_kernels(self._variables)
        self.dense = splice(self.dense, stepped, self.surgery.masks)
        self.surgery.iteration += 1
        self._maybe_update()
        write_masked(self._variables, self.dense, self.surgery.masks)

    def _maybe_update(self):
        by_index = {index: w for (index, _, _), w in zip(self.surgery.kernels, self.dense,
                                                          strict=True)}
        self.surgery.update(by_index, self._rng.random(), self.surgery.iteration)

    def get_state(self):
        """The pruning state (thresholds, masks, dense weights, step) as plain values.

        Example:
        >>> info, arrays = pruning.get_state()
        >>> DNS().set_state(info, arrays)
        """
        info, masks = self.surgery.to_plain()
        return {**info, "rng": self._rng.bit_generator.state}, [*masks, *self.dense]

    def set_state(self, info, arrays):
        """Restores `get_state()`'s values; the next `fit` continues from them."""
        surgery_info = {k: v for k, v in info.items() if k != "rng"}
        count = len(surgery_info["kernels"])
        self.surgery = Surgery.from_plain(surgery_info, arrays[:count])
        self.dense = [np.array(a) for a in arrays[count:]]
        if "rng" in info:
            self._rng.bit_generator.state = info["rng"]
        return self


class Magnitude(keras.callbacks.Callback):
    """Magnitude pruning on a polynomial-decay schedule (built by `magnitude`).

    Every `frequency` steps from `begin_step` to `end_step` each kernel keeps
    its largest |W|, the pruned share growing as
    `final_sparsity * (1 - (1 - t) ** 3)`; pruned weights stay zero (the
    kernel is masked after every step), as in TensorFlow Model Optimization.
    """

    def __init__(self, final_sparsity, begin_step, end_step, frequency, layers):
        super().__init__()
        self.final_sparsity = final_sparsity
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self.layers = layers
        self.step = 0
        self.masks = None
        self._variables = None

    def on_train_begin(self, logs=None):
        kernels = prunable_kernels(self.model, self.layers)
        self._variables = [self.model.weights[index] for index, _, _ in kernels]
        if self.masks is None:
            self.masks = [np.ones(v.shape, np.uint8) for v in self._variables]

    def on_train_batch_end(self, batch, logs=None):
        self.model  # noqa: B018 - on JAX, reading `model` brings the step's weights back
        self.step += 1
        kernels = read_kernels(self._variables)
        due = (self.begin_step <= self.step <= self.end_step
               and (self.step - self.begin_step) % self.frequency == 0) or (
            self.step == self.end_step)
        if due:
            sparsity = polynomial_sparsity(self.step, self.final_sparsity, self.begin_step,
                                           self.end_step)
            self.masks = [magnitude_mask(kernel, sparsity) for kernel in kernels]
        write_masked(self._variables, kernels, self.masks)


def magnitude(final_sparsity=0.9, begin_step=0, end_step=1000, frequency=100, layers=None):
    """A Keras callback pruning the smallest weights on a polynomial-decay schedule.

    The baseline every pruning user knows (TensorFlow Model Optimization's
    `PolynomialDecay` with `initial_sparsity=0`, power 3).

    Args:
        final_sparsity: Share of each kernel pruned at `end_step`, in [0, 1).
        begin_step: Step at which pruning starts.
        end_step: Step at which the final sparsity is reached.
        frequency: Steps between mask updates.
        layers: Names of the layers to prune; None for every Dense and
            convolution layer.

    Example:
    >>> model.fit(x, y, epochs=20, callbacks=[sparkeras.pruning.magnitude(0.95, 0, 500)])
    """
    if not isinstance(final_sparsity, numbers.Real) or not 0 <= final_sparsity < 1:
        raise ValueError(
            "final_sparsity must be a number in [0, 1). "
            f"Received: final_sparsity={final_sparsity!r}"
        )
    _number("begin_step", begin_step, low=0, integer=True)
    _number("end_step", end_step, low=begin_step + 1, integer=True)
    _number("frequency", frequency, low=1, integer=True)
    return Magnitude(final_sparsity, begin_step, end_step, frequency,
                     None if layers is None else list(layers))
