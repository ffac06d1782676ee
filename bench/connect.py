"""Spark Connect vs a classic session: fit and predict throughput, model shipping.

Runs, in one go on this machine, the same workload on a classic `local[2]`
session and on a Spark Connect session whose server runs `local[2]` in the
same process (`get_spark(remote="local[2]")`); each kind in a fresh
subprocess, since one process cannot hold both:
  1. a synchronous fit (2 workers, frequency "epoch") of the throughput
     benchmark's MLP (bench/throughput.py) on the same data: samples/s;
  2. predict on the training rows (a full pass to the noop sink): rows/s;
  3. the cost of shipping the model to the tasks: `evaluate` of the bench
     model and of a ~100 MB model on a 64-row frame (each call ships and
     loads the model anew), on Connect both in the task's closure and as an
     artifact file.
It prints a markdown table and the ratios Connect / classic.

Usage:
    python bench/connect.py            # 30,000 rows, 3 epochs (the recorded run)
    python bench/connect.py --quick    # 8,000 rows, 2 epochs
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from throughput import BATCH, _timed_write, make_data, make_model, to_frame  # noqa: E402

BIG_UNITS = 5000  # Dense(5000) on 5000 inputs: 25 million float32 weights, ~100 MB


def big_model():
    import keras

    model = keras.Sequential([keras.Input((BIG_UNITS,)), keras.layers.Dense(BIG_UNITS),
                              keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model


def _timed_evaluate(spark_model, frame, features_col="features"):
    """Seconds of the second of two `evaluate` calls (each ships the model anew)."""
    spark_model.evaluate(frame, features_col=features_col)
    start = time.perf_counter()
    spark_model.evaluate(frame, features_col=features_col)
    return time.perf_counter() - start


def run_kind(kind, rows, epochs):
    """Measures one kind of session in this process; returns a dict of figures."""
    import numpy as np
    import pandas as pd

    import sparkeras
    from sparkeras import SparkModel, session_access

    start = time.perf_counter()
    if kind == "connect":
        spark = sparkeras.get_spark(remote="local[2]")
    else:
        spark = sparkeras.get_spark("local[2]")
    sparkeras.session.wait_for_python_workers(spark)
    results = {"session_ready_s": time.perf_counter() - start}

    x, y = make_data(rows)
    train = to_frame(spark, x, y).repartition(2).cache()
    train.count()
    warm = SparkModel(make_model(), num_workers=2)  # the first fit of a session pays extra
    warm.fit(train.limit(2000).repartition(2), epochs=1, batch_size=BATCH, verbose=0)
    spark_model = SparkModel(make_model(), num_workers=2)
    start = time.perf_counter()
    spark_model.fit(train, epochs=epochs, batch_size=BATCH, verbose=0)
    results["fit_samples_per_s"] = rows * epochs / (time.perf_counter() - start)
    results["predict_rows_per_s"] = rows / _timed_write(spark_model.predict(train))

    small = train.limit(64).repartition(2).cache()
    small.count()
    big = spark.createDataFrame(pd.DataFrame(
        {"features": list(np.zeros((64, BIG_UNITS), "float32")), "label": np.zeros(64)}
    )).repartition(2).cache()
    big.count()
    big_model_ = SparkModel(big_model())
    ways = ["broadcast"] if kind == "classic" else ["closure", "artifact"]
    for way in ways:
        if way == "artifact":
            session_access.INLINE_LIMIT_BYTES = 0
        results[f"ship_bench_model_{way}_s"] = _timed_evaluate(SparkModel(spark_model.model),
                                                               small)
        results[f"ship_100mb_model_{way}_s"] = _timed_evaluate(big_model_, big)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8,000 rows, 2 epochs")
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--kind", choices=("classic", "connect"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows, epochs = (8_000, 2) if args.quick else (args.rows, args.epochs)
    if args.kind:
        print("RESULT " + json.dumps(run_kind(args.kind, rows, epochs)), flush=True)
        return
    results = {}
    for kind in ("classic", "connect"):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", SPARK_LOCAL_IP="127.0.0.1")
        run = subprocess.run(
            [sys.executable, __file__, "--kind", kind, "--rows", str(rows), "--epochs",
             str(epochs)], capture_output=True, text=True, env=env, check=False,
        )
        lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
        if not lines:
            sys.exit(f"the {kind} run failed:\n{run.stderr[-4000:]}")
        results[kind] = json.loads(lines[-1][len("RESULT "):])
    classic, connect = results["classic"], results["connect"]
    print(f"rows={rows} epochs={epochs} batch={BATCH}, local[2], 2 workers\n")
    print("| figure | classic | Connect | Connect / classic |")
    print("|---|---:|---:|---:|")
    for name in ("fit_samples_per_s", "predict_rows_per_s"):
        print(f"| {name} | {classic[name]:,.0f} | {connect[name]:,.0f} | "
              f"{connect[name] / classic[name]:.2f} |")
    for model in ("bench_model", "100mb_model"):
        base = classic[f"ship_{model}_broadcast_s"]
        for way in ("closure", "artifact"):
            value = connect[f"ship_{model}_{way}_s"]
            print(f"| evaluate, {model} ({way} vs broadcast), s | {base:.2f} | {value:.2f} | "
                  f"{value / base:.2f} |")
    print(f"| session ready, s | {classic['session_ready_s']:.1f} | "
          f"{connect['session_ready_s']:.1f} | |")
    print("\n" + json.dumps(results))


if __name__ == "__main__":
    main()
