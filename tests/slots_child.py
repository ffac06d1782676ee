"""Fits with num_workers=2 on a local[2] session whose spark.default.parallelism is 1.

Test helper, run as `python slots_child.py` by tests/driver/test_slots.py: the
suite's shared session cannot be reconfigured, so this one runs alone.
Prints `REPORT {json}` with the counted slots, the fit's workers and the
error a third worker gets.
"""

import json
import os
import sys

import numpy as np


def main():
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from helpers import dense_classifier

    import sparkeras
    from sparkeras.slots import task_slots

    spark = sparkeras.get_spark(
        "local[2]", app_name="sparkeras-slots", conf={"spark.default.parallelism": "1"}
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    frame = spark.createDataFrame(
        [(row.tolist(), int(row[0] > 0)) for row in x], "features array<float>, label long"
    )
    counted = task_slots(spark)
    model = sparkeras.SparkModel(dense_classifier(inputs=4, classes=2), num_workers=2)
    history = model.fit(frame, epochs=1, batch_size=16, verbose=0)
    try:
        sparkeras.SparkModel(dense_classifier(inputs=4, classes=2), num_workers=3).fit(
            frame, verbose=0
        )
        error = None
    except ValueError as caught:
        error = str(caught)
    report = {
        "default_parallelism": spark.sparkContext.defaultParallelism,
        "slots": counted.slots,
        "counted": counted.counted,
        "workers": len(model.training_summary),
        "epochs": len(history.history["loss"]),
        "error": error,
    }
    print("REPORT " + json.dumps(report), flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
