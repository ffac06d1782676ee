"""Pruning in a process of its own: `python pruning_child.py [multidevice RESULT_JSON]`.

Test helper. Without arguments: trains a small model with the DNS callback
under this process' backend (KERAS_BACKEND, set by the caller) and prints one
JSON line: the backend, the report, and whether every kernel equals the
callback's dense weights times its masks.

"multidevice": a pruned `SparkModel` fit on local[2], 2 workers with
`devices_per_task=2` (2 logical CPU devices each; devices are fixed when a
backend starts, hence a process and Spark session of its own, with
SPARKERAS_PRUNING_RECORD set by the caller); writes the driver's masks, the
weights' agreement with them, the compression and the training summary.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def callback():
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


def multidevice(path):
    from helpers import dense_classifier

    import sparkeras
    from sparkeras import SparkModel, TrainingConfig
    from sparkeras.demo import digits_frames
    from sparkeras.pruning import DNS, report

    spark = sparkeras.get_spark(
        "local[2]", conf={"spark.python.worker.reuse": "false", "spark.driver.host": "127.0.0.1"}
    )
    train_df, test_df = digits_frames(spark)
    pruning = DNS(c_rate=1.0, ramp=0)
    sm = SparkModel(dense_classifier(), num_workers=2, frequency=4, pruning=pruning,
                    config=TrainingConfig(devices_per_task=2))
    sm.fit(train_df, epochs=2, batch_size=32, verbose=0)
    weights = sm.model.get_weights()
    np.savez(os.path.join(os.path.dirname(path), "driver-masks.npz"), *pruning.surgery.masks)
    result = {
        "summary": sm.training_summary,
        "masked_exactly": all(np.array_equal(weights[index] != 0, mask.astype(bool))
                              for (index, _, _), mask in zip(pruning.surgery.kernels,
                                                             pruning.surgery.masks, strict=True)),
        "compression": report(sm.model)["compression"],
        "accuracy": sm.evaluate(test_df)["accuracy"],
    }
    spark.stop()
    with open(path, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    if sys.argv[1:2] == ["multidevice"]:
        multidevice(sys.argv[2])
    else:
        callback()
