"""Reads and restores a Keras optimizer's variables as numpy arrays.

Neutral module: workers send their optimizer state at each epoch end so the
driver can keep it (for resumes, checkpoints and the saved model), and a
resumed replica or the driver's model gets it back.
"""

import logging

import numpy as np

logger = logging.getLogger(__name__)


def optimizer_arrays(model):
    """The optimizer's variables as numpy arrays ([] when not built yet).

    Example:
    >>> state = optimizer_arrays(model)
    """
    optimizer = model.optimizer
    if optimizer is None or not optimizer.built:
        return []
    return [np.asarray(variable.numpy()) for variable in optimizer.variables]


def restore_optimizer(model, arrays):
    """Builds `model`'s optimizer if needed and assigns `arrays` to its variables.

    A state whose layout does not match the optimizer (another optimizer or
    model) is ignored with a warning rather than half applied.

    Example:
    >>> restore_optimizer(model, state)
    """
    if not arrays:
        return
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    variables = optimizer.variables
    if len(variables) != len(arrays) or any(
        tuple(v.shape) != a.shape for v, a in zip(variables, arrays, strict=True)
    ):
        logger.warning(
            "Optimizer state not restored: it has %d variables, the model's optimizer %d.",
            len(arrays), len(variables),
        )
        return
    for variable, array in zip(variables, arrays, strict=True):
        variable.assign(array.astype(variable.dtype))
