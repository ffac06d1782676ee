"""Training and prediction throughput: sparkeras vs single-process Keras.

Runs, in one go on this machine:
  1. single-process Keras `fit` with the default thread count and with one
     thread (each in a fresh subprocess, so the thread setting applies);
  2. sparkeras `fit` on an embedded `local[2]` Spark, 2 workers, frequency
     "epoch", on the same data: synchronous, asynchronous and hogwild;
  3. `predict` throughput: sparkeras vs single-process `model.predict`;
  4. the cost of a tiny fit (1,000 rows, 1 epoch) once the session started
     (with its Python workers, see `sparkeras.session.wait_for_python_workers`):
     the first fit of the session and a second one.
It prints a markdown table and the ratio sparkeras / best single-process.

Usage:
    python bench/throughput.py            # 60,000 rows, 5 epochs (the recorded run)
    python bench/throughput.py --quick    # 12,000 rows, 2 epochs
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

FEATURES, CLASSES, BATCH = 784, 10, 64


def make_data(rows, seed=0):
    """A learnable 10-class task: noisy points around 10 fixed class centres.

    The best possible rule (the nearest centre) is right on 98.8% of test
    rows; the MLP levels off near 97% within 5 epochs, so accuracies near that
    plateau compare training quality, not luck.
    """
    centres = np.random.default_rng(1234).normal(scale=0.15, size=(CLASSES, FEATURES))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, size=rows)
    x = (centres[y] + rng.normal(size=(rows, FEATURES))).astype("float32")
    return x, y.astype("int64")


def make_model(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dense(256, activation="relu"),
         keras.layers.Dense(128, activation="relu"),
         keras.layers.Dense(CLASSES, activation="softmax")]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def single_process(rows, epochs, threads):
    """Trains in this process; returns samples/s, test accuracy, predict rows/s."""
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    x, y = make_data(rows)
    x_test, y_test = make_data(10_000, seed=1)
    model = make_model()
    start = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=1024, verbose=0)
    predict_seconds = time.perf_counter() - start
    return {"samples_per_s": rows * epochs / seconds, "accuracy": accuracy,
            "seconds": seconds, "predict_rows_per_s": rows / predict_seconds}


def run_single_subprocess(rows, epochs, threads):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if threads:
        env.update({name: str(threads) for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                                                     "TF_NUM_INTEROP_THREADS")})
    out = subprocess.run(
        [sys.executable, __file__, "--single", str(threads), "--rows", str(rows),
         "--epochs", str(epochs)],
        env=env, check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def to_frame(spark, x, y):
    import pandas as pd

    return spark.createDataFrame(pd.DataFrame({"features": list(x), "label": y}))


def spark_runs(rows, epochs):
    import sparkeras
    from sparkeras import SparkModel

    start = time.perf_counter()
    spark = sparkeras.get_spark("local[2]")
    spark.range(1).count()
    results = {"session_start_s": time.perf_counter() - start}
    sparkeras.session.wait_for_python_workers(spark)
    results["workers_ready_s"] = time.perf_counter() - start

    tiny = to_frame(spark, *make_data(1000, seed=2)).repartition(2).cache()
    tiny.count()
    for label in ("tiny_fit_cold_s", "tiny_fit_warm_s"):
        model = make_model()  # built outside the timing, as in the Keras runs
        start = time.perf_counter()
        SparkModel(model, num_workers=2).fit(tiny, epochs=1, batch_size=BATCH, verbose=0)
        results[label] = time.perf_counter() - start

    x, y = make_data(rows)
    x_test, y_test = make_data(10_000, seed=1)
    train = to_frame(spark, x, y).repartition(2).cache()
    train.count()
    for mode in ("asynchronous", "hogwild", "synchronous"):
        spark_model = SparkModel(make_model(), mode=mode, frequency="epoch", num_workers=2)
        start = time.perf_counter()
        spark_model.fit(train, epochs=epochs, batch_size=BATCH, verbose=0)
        seconds = time.perf_counter() - start
        _, accuracy = spark_model.model.evaluate(x_test, y_test, verbose=0)
        results[mode] = {"samples_per_s": rows * epochs / seconds, "accuracy": accuracy,
                         "seconds": seconds}

    results["synchronous"]["predict_rows_per_s"] = rows / _timed_write(
        spark_model.predict(train)
    )
    # The ceiling of any prediction on Spark: an Arrow UDF over the same column
    # that computes nothing, so all its time is Spark moving the rows.
    results["arrow_udf_ceiling_rows_per_s"] = rows / _timed_write(
        train.withColumn("nothing", _nothing_udf()("features"))
    )
    return results


def _timed_write(frame):
    """Seconds of the second of two full passes over `frame` (the first warms caches)."""
    frame.write.format("noop").mode("overwrite").save()
    start = time.perf_counter()
    frame.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - start


def _nothing_udf():
    from collections.abc import Iterator

    import pyarrow as pa
    from pyspark.sql import functions

    def zeros(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        for batch in batches:
            yield pa.array(np.zeros(len(batch), "float32"))

    return functions.arrow_udf(zeros, "float")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12,000 rows, 2 epochs")
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--single", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single is not None:
        print(json.dumps(single_process(args.rows, args.epochs, args.single)))
        return
    rows, epochs = (12_000, 2) if args.quick else (args.rows, args.epochs)
    default = run_single_subprocess(rows, epochs, 0)
    one = run_single_subprocess(rows, epochs, 1)
    spark = spark_runs(rows, epochs)
    best = max((default, one), key=lambda result: result["samples_per_s"])
    best_predict = max(default["predict_rows_per_s"], one["predict_rows_per_s"])
    sync = spark["synchronous"]
    print(f"\n{rows} rows x {epochs} epochs, batch {BATCH}, MLP 784-256-128-10 (Adam)\n")
    print("| run | samples/s | test accuracy | fit seconds | predict rows/s |")
    print("|---|---|---|---|---|")
    runs = [("Keras, default threads", default), ("Keras, 1 thread", one)]
    runs += [(f"sparkeras {mode}, local[2], 2 workers", spark[mode])
             for mode in ("synchronous", "asynchronous", "hogwild")]
    for name, result in runs:
        predict = result.get("predict_rows_per_s")
        print(f"| {name} | {result['samples_per_s']:,.0f} | {result['accuracy']:.4f} | "
              f"{result['seconds']:.1f} | {f'{predict:,.0f}' if predict else '-'} |")
    print()
    for mode in ("synchronous", "asynchronous", "hogwild"):
        print(f"{mode}: training ratio sparkeras / best Keras "
              f"{spark[mode]['samples_per_s'] / best['samples_per_s']:.2f}x, accuracy "
              f"{100 * (spark[mode]['accuracy'] - best['accuracy']):+.2f} points")
    print(f"predict ratio sparkeras / best Keras: {sync['predict_rows_per_s'] / best_predict:.2f}x"
          f"; Spark's ceiling (an Arrow UDF computing nothing on the same column): "
          f"{spark['arrow_udf_ceiling_rows_per_s']:,.0f} rows/s, "
          f"{spark['arrow_udf_ceiling_rows_per_s'] / best_predict:.2f}x")
    print(f"session start: {spark['session_start_s']:.1f} s, its Python workers up (Keras "
          f"imported) at {spark['workers_ready_s']:.1f} s; tiny fit (1,000 rows, 1 epoch): "
          f"first {spark['tiny_fit_cold_s']:.1f} s, second {spark['tiny_fit_warm_s']:.1f} s")


if __name__ == "__main__":
    main()
