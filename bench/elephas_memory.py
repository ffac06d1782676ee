"""elephas' MNIST example's data size through the elephas layer with a 1 GB driver heap.

elephas' `mnist_mlp_spark.py` trains a 784-128-128-10 MLP on 60,000 x 784
rows made with `to_simple_rdd`, with `validation_split=0.1`. This runs the
same shapes (random data: no downloads) through
`sparkeras.compat.elephas.spark_model.SparkModel.fit` on a fresh `local[2]`
session whose driver heap (`spark.driver.memory`) is 1 GB, Spark's default,
and reports whether the fit finished, its wall time, and the largest amount
of memory Spark's block manager held for persisted rows while it ran.

`--cache-in-memory` repeats it with the converted DataFrame cached in memory
(`DataFrame.cache()`), as this layer did before, for comparison.

Usage:
    python bench/elephas_memory.py                     # the layer as it is
    python bench/elephas_memory.py --cache-in-memory   # the old behaviour
    python bench/elephas_memory.py --rows 6000         # a quick smaller run
"""

import argparse
import json
import os
import sys
import threading
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--cache-in-memory", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import numpy as np

    import sparkeras
    from sparkeras.compat.elephas import spark_model as layer
    from sparkeras.compat.elephas.utils.rdd_utils import to_simple_rdd

    spark = sparkeras.get_spark("local[2]", app_name="elephas-memory",
                                conf={"spark.driver.memory": "1g"})
    sparkeras.session.wait_for_python_workers(spark)
    heap = spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory()
    if args.cache_in_memory:
        convert = layer.pairs_to_frame

        def cached(*a, **k):
            frame, features, label = convert(*a, **k)
            return frame.cache(), features, label

        layer.pairs_to_frame = cached

    rng = np.random.default_rng(0)
    x = rng.random((args.rows, 784), dtype="float32")
    y = keras.utils.to_categorical(rng.integers(0, 10, args.rows), 10)
    model = keras.Sequential([
        keras.Input((784,)), keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.2), keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.2), keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(keras.optimizers.SGD(learning_rate=0.1), "categorical_crossentropy", ["acc"])

    peak = {"memory": 0, "disk": 0}
    done = threading.Event()

    def watch():
        context = spark.sparkContext._jsc.sc()
        while not done.wait(0.5):
            infos = list(context.getRDDStorageInfo())
            peak["memory"] = max(peak["memory"], sum(i.memSize() for i in infos))
            peak["disk"] = max(peak["disk"], sum(i.diskSize() for i in infos))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    error = None
    try:
        spark_model = layer.SparkModel(model, num_workers=2)
        spark_model.fit(to_simple_rdd(spark.sparkContext, x, y), epochs=1, batch_size=64,
                        verbose=0, validation_split=0.1)
    except Exception as caught:  # the figure to report: what failed and how
        error = f"{type(caught).__name__}: {str(caught)[:300]}"
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    print(json.dumps({
        "rows": args.rows, "cache_in_memory": args.cache_in_memory,
        "driver_heap_mb": round(heap / 2**20), "finished": error is None, "error": error,
        "fit_seconds": round(seconds, 1),
        "peak_persisted_memory_mb": round(peak["memory"] / 2**20, 1),
        "peak_persisted_disk_mb": round(peak["disk"] / 2**20, 1),
    }))
    spark.stop()
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main())
