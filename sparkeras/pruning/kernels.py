"""Reading, splicing and masking a model's kernel variables.

Neutral module: the local callbacks and the executors' replicas move the
pruned kernels between the Keras variables and numpy with these functions.
"""

import numpy as np


def read_kernels(variables):
    """The values of Keras `variables`, as numpy arrays."""
    import keras

    return [np.array(keras.ops.convert_to_numpy(variable)) for variable in variables]


def splice(dense, stepped, masks):
    """The dense kernels plus the step the optimizer took at the masked ones.

    `stepped` holds the kernels after a step taken from `dense * masks`; the
    change is added to every entry of `dense`, pruned ones included.
    """
    return [w + (k - w * m) for w, k, m in zip(dense, stepped, masks, strict=True)]


def write_masked(variables, dense, masks):
    """Sets each variable to its dense kernel times its mask."""
    for variable, weights, mask in zip(variables, dense, masks, strict=True):
        variable.assign((weights * mask).astype(weights.dtype))


def sync_model(model):
    """On JAX, brings the training loop's state back into the model's variables."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()
