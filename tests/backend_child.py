"""Saves a trained model's artefacts under one backend, checks them under another.

Test helper, also run as `python backend_child.py save|load FOLDER` (with
KERAS_BACKEND set by the caller). The artefacts are what leaves a process in
sparkeras: the `.keras` file, a fit checkpoint (`sparkeras.checkpoint`) and
the weights as the parameter server's wire frame (`sparkeras.ps.codec`).
"""

import io
import json
import os
import sys

import numpy as np

_KEY = bytes(range(32))


def model_and_data():
    """A small compiled classifier and its data (the same under every backend)."""
    from helpers import dense_classifier

    model = dense_classifier(inputs=8, classes=3, hidden=16)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0).astype("int64")
    return model, x, y


def save_artifacts(model, x, folder, checkpoint=True):
    """Writes model.keras, x.npy, predicted.npy, weights.frame (and a checkpoint)."""
    import keras

    from sparkeras.checkpoint import save_checkpoint
    from sparkeras.common.optimizer_state import optimizer_arrays
    from sparkeras.ps import codec

    model.save(os.path.join(folder, "model.keras"))
    np.save(os.path.join(folder, "x.npy"), x)
    np.save(os.path.join(folder, "predicted.npy"), model.predict(x, verbose=0))
    frame = codec.encode_request(0, _KEY, "sync", {"round": 0}, model.get_weights())
    with open(os.path.join(folder, "weights.frame"), "wb") as handle:
        handle.write(b"".join(bytes(part) for part in frame))
    if checkpoint:
        save_checkpoint(
            os.path.join(folder, "checkpoint"),
            2,
            model.get_weights(),
            optimizer_arrays(model),
            {"loss": [1.0, 0.5]},
        )
    with open(os.path.join(folder, "backend.txt"), "w") as handle:
        handle.write(keras.backend.backend())


def check_artifacts(folder):
    """Loads what `save_artifacts` wrote with this process' backend; returns a report."""
    import keras

    from sparkeras.checkpoint import load_checkpoint
    from sparkeras.common.optimizer_state import optimizer_arrays, restore_optimizer
    from sparkeras.ps import codec

    x = np.load(os.path.join(folder, "x.npy"))
    expected = np.load(os.path.join(folder, "predicted.npy"))
    loaded = keras.saving.load_model(os.path.join(folder, "model.keras"))
    report = {
        "saved_under": open(os.path.join(folder, "backend.txt")).read(),
        "loaded_under": keras.backend.backend(),
        "model_difference": float(np.max(np.abs(loaded.predict(x, verbose=0) - expected))),
    }
    with open(os.path.join(folder, "weights.frame"), "rb") as handle:
        stream = io.BytesIO(handle.read())

    def read_into(view, phase):
        del phase
        view[:] = stream.read(len(view))

    message = codec.read_frame(read_into, key=_KEY, seq=0, kinds=(codec.REQUEST,))
    fresh = keras.saving.load_model(os.path.join(folder, "model.keras"))
    fresh.set_weights([np.zeros_like(w) for w in fresh.get_weights()])
    fresh.set_weights(message.tensors)
    report["wire_difference"] = float(np.max(np.abs(fresh.predict(x, verbose=0) - expected)))
    checkpoint_dir = os.path.join(folder, "checkpoint")
    if os.path.exists(checkpoint_dir):
        state = load_checkpoint(checkpoint_dir)
        fresh.set_weights([np.zeros_like(w) for w in fresh.get_weights()])
        fresh.set_weights(state["weights"])
        restore_optimizer(fresh, state["optimizer_state"])
        report["checkpoint_difference"] = float(
            np.max(np.abs(fresh.predict(x, verbose=0) - expected))
        )
        restored = optimizer_arrays(fresh)
        report["optimizer_restored"] = len(restored) == len(state["optimizer_state"]) > 0 and all(
            np.array_equal(a, b) for a, b in zip(restored, state["optimizer_state"], strict=True)
        )
        report["optimizer_matches_keras_file"] = all(
            np.allclose(a, b)
            for a, b in zip(optimizer_arrays(loaded), state["optimizer_state"], strict=True)
        )
        # Training goes on from the restored state under this backend.
        y = np.argmax(expected, axis=1)
        history = fresh.fit(x, y, batch_size=32, epochs=1, verbose=0)
        report["resumed_loss"] = float(history.history["loss"][-1])
    return report


if __name__ == "__main__":
    command, folder = sys.argv[1], sys.argv[2]
    if command == "save":
        model, x, y = model_and_data()
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)
        save_artifacts(model, x, folder)
    else:
        print("REPORT " + json.dumps(check_artifacts(folder)))
