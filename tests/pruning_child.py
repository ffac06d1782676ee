"""Trains a small model with the DNS callback under this process' backend.

Test helper, run as `python pruning_child.py` with KERAS_BACKEND set by the
caller; prints one JSON line: the backend, the report, and whether every
kernel equals the callback's dense weights times its masks.
"""

import json

import numpy as np


def main():
    import keras
    from helpers import dense_classifier

    from sparkeras.pruning import DNS, report

    model = dense_classifier(inputs=8, classes=3, hidden=32)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0).astype("int64")
    before = model.evaluate(x, y, verbose=0)[1]
    pruning = DNS(c_rate=1.0, iter_stop=40)
    model.fit(x, y, epochs=6, batch_size=16, verbose=0, callbacks=[pruning])
    weights = model.get_weights()
    consistent = all(
        np.array_equal(weights[index], (dense * mask).astype(dense.dtype))
        for (index, _, _), dense, mask in zip(pruning.surgery.kernels, pruning.dense,
                                              pruning.surgery.masks, strict=True)
    )
    hidden_dense = [float(np.abs(dense[mask == 0]).sum())
                    for dense, mask in zip(pruning.dense, pruning.surgery.masks, strict=True)]
    print(json.dumps({
        "backend": keras.backend.backend(), "compression": report(model)["compression"],
        "consistent": consistent, "hidden_dense": hidden_dense, "accuracy_before": before,
        "accuracy": model.evaluate(x, y, verbose=0)[1], "iteration": pruning.surgery.iteration,
    }))


if __name__ == "__main__":
    main()
