"""Pruning figures on scikit-learn's digits: dense vs DNS vs magnitude, local and on Spark.

Run from the repository root:
    PYTHONPATH=$PWD python bench/pruning.py --models mlp
    PYTHONPATH=$PWD python bench/pruning.py --models cnn

For each model (an MLP 64-300-100-10, the LeNet-300-100 shape, and a small
LeNet-5-style CNN on the 8x8 images) it trains, with the same epoch budget:
- dense: all epochs with Adam(1e-3);
- DNS: a third of the epochs dense, then `DNS()` (its defaults: thresholds
  ramping up over the first 500 steps) for the rest: Adam(5e-3) while the
  masks change, until `iter_stop` (1000 steps, about 23 of the 40 epochs),
  then retraining with the masks fixed at Adam(1e-3);
- magnitude: the same, with `magnitude(final_sparsity=...)` set to DNS's
  compression, reached at the same step as DNS's `iter_stop`;
- dense on Spark: all epochs through `SparkModel(..., num_workers=2,
  frequency="batch")`, the distributed baseline;
- DNS on Spark: the same two phases through `SparkModel(..., num_workers=2,
  frequency="batch", pruning=DNS(...))`, each worker taking batches of
  32 / workers rows: the same global batch and steps as locally.
`--match-spark-compression` adds a local DNS run with c shifted until its
compression is the Spark run's (to compare accuracy at the same compression);
`--at-compression X` runs only local DNS, with its defaults and shifted to X.
`--c-rate`, `--conv-c-rate`, `--iter-stop` and `--ramp` set DNS's arguments
(both models; default: `DNS()`'s own).
It prints one JSON line per run and a Markdown table (accuracy on the 25 %
held out, compression = prunable weights / weights kept, gzip size of the
stripped `.keras` file).
"""

import argparse
import gzip
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BATCH = 32
DNS_RATE = 5e-3  # while the masks change
RETRAIN_RATE = 1e-3  # once they are fixed (from iter_stop on)


def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return train_test_split((x / 16.0).astype("float32"), y, test_size=0.25, random_state=0)


def build(kind, seed=1):
    import keras

    keras.utils.set_random_seed(seed)
    if kind == "mlp":
        layers = [keras.Input((64,)), keras.layers.Dense(300, activation="relu"),
                  keras.layers.Dense(100, activation="relu")]
    else:
        layers = [keras.Input((64,)), keras.layers.Reshape((8, 8, 1)),
                  keras.layers.Conv2D(6, 3, padding="same", activation="relu"),
                  keras.layers.MaxPooling2D(), keras.layers.Conv2D(16, 3, activation="relu"),
                  keras.layers.Flatten(), keras.layers.Dense(120, activation="relu"),
                  keras.layers.Dense(84, activation="relu")]
    model = keras.Sequential([*layers, keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def gzip_size(model):
    from sparkeras.pruning import strip

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.keras")
        strip(model).save(path)
        with open(path, "rb") as handle:
            return len(gzip.compress(handle.read(), 9))


def result(name, kind, model, data, seconds, **extra):
    from sparkeras.pruning import report

    _, x_test, _, y_test = data
    row = {"model": kind, "run": name, "accuracy": float(model.evaluate(x_test, y_test,
                                                                        verbose=0)[1]),
           "compression": report(model)["compression"], "gzip_bytes": gzip_size(model),
           "seconds": round(seconds, 1), **extra}
    print(json.dumps(row), flush=True)
    return row


def phases(epochs):
    """Dense warm-up epochs (a third), then pruning and retraining epochs."""
    warm = epochs // 3
    return warm, epochs - warm


def rates(steps_per_epoch, iter_stop):
    """The pruning phase's learning rates: DNS_RATE until `iter_stop`, then RETRAIN_RATE."""
    import keras

    switch = -(-iter_stop // steps_per_epoch)  # the first epoch with the masks fixed
    return keras.callbacks.LearningRateScheduler(
        lambda epoch, rate: DNS_RATE if epoch < switch else RETRAIN_RATE)


def local_dns(kind, data, epochs, dns_settings, seed=1, name="DNS"):
    """The local DNS run: dense warm-up, then `DNS(**dns_settings)`; (its row, the DNS)."""
    from sparkeras.pruning import DNS

    x_train, _, y_train, _ = data
    steps = -(-len(x_train) // BATCH)
    warm, rest = phases(epochs)
    started = time.perf_counter()
    pruned = build(kind, seed)
    pruned.fit(x_train, y_train, epochs=warm, batch_size=BATCH, verbose=0)
    pruning = DNS(**dns_settings)
    pruned.fit(x_train, y_train, epochs=rest, batch_size=BATCH, verbose=0,
               callbacks=[rates(steps, pruning.iter_stop), pruning])
    return result(name, kind, pruned, data, time.perf_counter() - started,
                  settings=dns_settings), pruning


def local_at_compression(kind, data, epochs, dns_settings, first, target, seed=1, tries=4):
    """Local DNS with its c shifted until the compression is within 3 % of `target`.

    `first` is the local DNS row at `dns_settings`. Compression grows with c;
    a secant on log(compression) over the shift (both c_rate and conv_c_rate
    move by it) gets there in two or three runs. Returns the closest run's row.
    """
    import math

    from sparkeras.pruning import DNS

    if not math.isfinite(target) or not math.isfinite(first["compression"]):
        raise ValueError(f"Cannot search for a compression of {target} from "
                         f"{first['compression']}: a run pruned every weight (too few epochs "
                         "before pruning?); train longer first (--epochs).")
    base = DNS(**dns_settings)
    points = [(0.0, math.log(first["compression"]))]
    slope = 0.25  # d log(compression) / d c, about, with the ramp (MLP: c 7 -> 8, 23x -> 29x)
    best = first
    for _ in range(tries):
        shift, logged = points[-1]
        if abs(logged - math.log(target)) < math.log(1.03):
            break
        shift += (math.log(target) - logged) / slope
        settings = {**dns_settings, "c_rate": round(base.c_rate + shift, 3),
                    "conv_c_rate": round(base.conv_c_rate + shift, 3)}
        row, _ = local_dns(kind, data, epochs, settings, seed,
                           name=f"DNS(c_rate={settings['c_rate']}), aimed at {target:.1f}x")
        if not math.isfinite(row["compression"]):
            break  # c too high: every weight pruned
        points.append((shift, math.log(row["compression"])))
        (s0, l0), (s1, l1) = points[-2:]
        slope = max((l1 - l0) / (s1 - s0), 0.1) if s1 != s0 else slope
        if abs(math.log(row["compression"] / target)) < abs(math.log(best["compression"] / target)):
            best = row
    return best


def local_runs(kind, data, epochs, dns_settings, seed=1):
    from sparkeras.pruning import magnitude

    x_train, _, y_train, _ = data
    steps = -(-len(x_train) // BATCH)
    warm, rest = phases(epochs)
    rows = []
    started = time.perf_counter()
    dense = build(kind, seed)
    dense.fit(x_train, y_train, epochs=epochs, batch_size=BATCH, verbose=0)
    rows.append(result("dense", kind, dense, data, time.perf_counter() - started))

    dns_row, pruning = local_dns(kind, data, epochs, dns_settings, seed)
    rows.append(dns_row)

    started = time.perf_counter()
    baseline = build(kind, seed)
    baseline.fit(x_train, y_train, epochs=warm, batch_size=BATCH, verbose=0)
    sparsity = min(0.999, 1 - 1 / dns_row["compression"])
    baseline.fit(x_train, y_train, epochs=rest, batch_size=BATCH, verbose=0,
                 callbacks=[rates(steps, pruning.iter_stop),
                            magnitude(final_sparsity=sparsity, begin_step=0,
                                      end_step=pruning.iter_stop, frequency=steps // 4)])
    rows.append(result("magnitude", kind, baseline, data, time.perf_counter() - started))
    return rows


def spark_run(kind, data, epochs, dns_settings, workers, seed=1):
    import pandas as pd

    import sparkeras
    from sparkeras import SparkModel
    from sparkeras.pruning import DNS

    x_train, _, y_train, _ = data
    spark = sparkeras.get_spark(f"local[{workers}]", app_name="sparkeras-bench-pruning",
                                conf={"spark.driver.host": "127.0.0.1"})
    frame = spark.createDataFrame(pd.DataFrame({"features": list(x_train), "label": y_train}))
    frame = frame.repartition(workers).cache()
    # Each worker takes BATCH / workers rows a step and the replicas average after every
    # step: the same global batch, steps and iter_stop as locally.
    batch = BATCH // workers
    steps = -(-max(frame.rdd.glom().map(len).collect()) // batch)
    started = time.perf_counter()
    dense = build(kind, seed)
    SparkModel(dense, num_workers=workers, frequency="batch").fit(
        frame, epochs=epochs, batch_size=batch, verbose=0)
    dense_row = result(f"dense, SparkModel {workers} workers", kind, dense, data,
                       time.perf_counter() - started)
    warm, rest = phases(epochs)
    started = time.perf_counter()
    model = build(kind, seed)
    SparkModel(model, num_workers=workers, frequency="batch").fit(
        frame, epochs=warm, batch_size=batch, verbose=0)
    pruning = DNS(**dns_settings)
    sm = SparkModel(model, num_workers=workers, frequency="batch", pruning=pruning)
    sm.fit(frame, epochs=rest, batch_size=batch, verbose=0,
           callbacks=[rates(steps, pruning.iter_stop)])
    return [dense_row, result(f"DNS, SparkModel {workers} workers", kind, sm.model, data,
                              time.perf_counter() - started, settings=dns_settings)]


def table(rows):
    lines = ["| model | run | accuracy | compression | gzip .keras |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['run']} | {100 * r['accuracy']:.2f} % | "
              f"{r['compression']:.1f}x | {r['gzip_bytes'] / 1024:.0f} KiB |" for r in rows]
    return "\n".join(lines)


def main():
    global DNS_RATE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60, help="MLP epoch budget")
    parser.add_argument("--cnn-epochs", type=int, default=60, help="CNN epoch budget")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--seed", type=int, default=1, help="the models' initialisation seed")
    parser.add_argument("--pruning-rate", type=float, default=DNS_RATE,
                        help="the learning rate while the masks change")
    parser.add_argument("--c-rate", type=float, help="DNS c_rate (default: DNS()'s own)")
    parser.add_argument("--conv-c-rate", type=float,
                        help="DNS conv_c_rate (default: DNS()'s own)")
    parser.add_argument("--iter-stop", type=int, help="DNS iter_stop (default: DNS()'s own)")
    parser.add_argument("--ramp", type=float,
                        help="DNS ramp, 0 for the paper's abrupt start (default: DNS()'s own)")
    parser.add_argument("--match-spark-compression", action="store_true",
                        help="also run local DNS with c shifted to the Spark run's compression")
    parser.add_argument("--at-compression", type=float, metavar="X",
                        help="only local DNS: with its defaults, then with c shifted to X")
    args = parser.parse_args()
    DNS_RATE = args.pruning_rate  # read by rates() in every run
    data = digits()
    chosen = {"c_rate": args.c_rate, "conv_c_rate": args.conv_c_rate,
              "iter_stop": args.iter_stop, "ramp": args.ramp}
    settings = {name: value for name, value in chosen.items() if value is not None}
    rows = []
    for kind in args.models.split(","):
        epochs = args.epochs if kind == "mlp" else args.cnn_epochs
        if args.at_compression:
            first = local_dns(kind, data, epochs, settings, args.seed)[0]
            rows += [first, local_at_compression(kind, data, epochs, settings, first,
                                                 args.at_compression, args.seed)]
            continue
        local = local_runs(kind, data, epochs, settings, args.seed)
        rows += local
        if not args.no_spark:
            rows += spark_run(kind, data, epochs, settings, args.workers, args.seed)
            if args.match_spark_compression:
                rows.append(local_at_compression(kind, data, epochs, settings, local[1],
                                                 rows[-1]["compression"], args.seed))
    print(table(rows))


if __name__ == "__main__":
    main()
