"""Exports a Keras model as a TensorFlow SavedModel that TF Serving can load.

Driver-side module.
"""

import os

__all__ = ["export_saved_model"]

_BACKENDS = ("tensorflow", "jax")


def export_saved_model(model, path):
    """Writes `model` as a TensorFlow SavedModel with a `serve` endpoint.

    Keras 3 traces the model's forward pass (inference mode) into the
    SavedModel's `serve` function and its `serving_default` signature. TF
    Serving expects a numbered version folder under the model's folder, e.g.
    `/models/digits/1`.

    Args:
        model: A built `keras.Model`.
        path: Folder to write, local or any path `tf.io.gfile` takes (`gs://...`).

    Returns:
        `path`, as a string.

    Raises:
        ValueError: The Keras backend cannot write a TensorFlow SavedModel.
        TypeError: `path` is not a path.

    Example:
    >>> export_saved_model(model, "/models/digits/1")
    >>> tf.saved_model.load("/models/digits/1").serve(x)
    """
    import keras

    backend = keras.backend.backend()
    if backend not in _BACKENDS:
        raise ValueError(
            "A TensorFlow SavedModel can only be exported from the TensorFlow or JAX backend. "
            "Set KERAS_BACKEND=tensorflow (or jax, with tensorflow installed), or save the "
            f"model in the .keras format instead. Received: backend={backend!r}"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            "path must be the folder to write the SavedModel to, e.g. '/models/digits/1'. "
            f"Received: path of type {type(path).__name__}"
        )
    path = os.fspath(path)
    model.export(path, format="tf_saved_model", verbose=False)
    return path
