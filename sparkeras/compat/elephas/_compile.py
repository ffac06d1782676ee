"""tf.keras' `compile(optimizer, loss, ["acc"])`, repaired for Keras 3.

Driver-side module. Keras 3's compile is `compile(optimizer, loss,
loss_weights, metrics)`, so elephas' examples, which pass the metrics third,
give string loss weights that Keras refuses at fit. As elephas does, the
model is compiled again without them: here the strings become its metrics,
with a one-time warning that names the fix.
"""

from sparkeras.compat.elephas._warnings import warn_once


def repair_positional_metrics(model):
    """Recompiles `model` with string `loss_weights` as its metrics; returns the model.

    Example:
    >>> model.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy", ["acc"])
    >>> repair_positional_metrics(model).get_compile_config()["metrics"]
    ['acc']
    """
    config = model.get_compile_config() or {}
    weights = config.get("loss_weights")
    values = list(weights.values()) if isinstance(weights, dict) else list(weights or [])
    if not any(isinstance(value, str) for value in values):
        return model
    if not all(isinstance(value, str) for value in values) or isinstance(weights, dict):
        raise ValueError(
            "The model was compiled with strings as loss_weights: Keras 3's compile is "
            "compile(optimizer, loss, loss_weights, metrics), so a third positional argument "
            "such as ['acc'] (tf.keras' metrics) became loss weights. Compile with "
            f"metrics=[...] by keyword. Received: loss_weights={weights!r}"
        )
    warn_once(
        "positional metrics",
        f"the model was compiled as compile(optimizer, loss, {values!r}); Keras 3 reads a "
        "third positional argument as loss_weights and refuses strings at fit, so it was "
        f"compiled again with metrics={values!r} and no loss weights. Fix: "
        f"model.compile(optimizer, loss, metrics={values!r}).",
    )
    model.compile(optimizer=model.optimizer, loss=model.loss, metrics=values)
    return model
