"""The data path: worker memory against partition size, fixed cost per fit, 5-epoch fit.

Runs, in one go on an embedded `local[2]` Spark with 2 workers:
  1. worker peak anonymous memory (RssAnon, from `training_summary`) for a
     fit of 2 epochs on `--small` and `--large` rows x 784 float32 generated
     in Spark (2 partitions, nothing cached), with data="auto" (these
     partitions stream) and, for the small frame, data="memory" (the path
     that holds the partition);
  2. the fixed cost per fit: fits of 1 and 3 epochs on 60,000 x 784 rows
     cached in 6 partitions (warm session); the intercept of time over
     epochs, (3 * t1 - t3) / 2, with data="auto", for a new model at each
     fit and for one SparkModel fitted again (its workers keep its traced
     training step), and for that refit with data="stream";
  3. Spark's own floor under that fixed cost: the median time (and the
     Spark JVM's CPU seconds) of a job over 2 rows, and of a job that reads
     the cached frame as a fit does (2 tasks over the coalesced 6
     partitions) and discards it; 5 timed jobs of each after one warm-up;
  4. a 5-epoch fit on that frame vs the best single-process Keras (default
     threads or one thread, each in a fresh process), with test accuracy,
     streaming ("auto") and then in memory (the full shuffle), to compare
     the accuracy of the two shuffles.
It prints the figures as JSON lines and a markdown summary.

Usage:
    python bench/data.py                        # recorded in docs/benchmarks.md
    python bench/data.py --large 400000         # the issue's larger frames need the memory
    python bench/data.py --quick                # 20,000 vs 80,000 rows; 12,000-row fits
    python bench/data.py --large 800000 --memory-only   # the issue's 50k vs 800k memory figure
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import BATCH, FEATURES, make_data, make_model, run_single_subprocess, to_frame  # noqa: E402


def _generated(spark, rows):
    """Rows of 784 float32 made in the JVM (one random value repeated: content is moot)."""
    from pyspark.sql import functions as F

    return spark.range(rows, numPartitions=2).select(
        F.array_repeat(F.rand(0).cast("float"), FEATURES).alias("features"),
        (F.col("id") % 10).cast("int").alias("label"),
    )


def _fit(frame, epochs, data, spark_model=None):
    from sparkeras import SparkModel, TrainingConfig

    if spark_model is None:
        spark_model = SparkModel(make_model(), num_workers=2, config=TrainingConfig(data=data))
    start = time.perf_counter()
    spark_model.fit(frame, epochs=epochs, batch_size=BATCH, verbose=0)
    return spark_model, time.perf_counter() - start


def memory(spark, sizes):
    results = []
    for rows, data in [(sizes[0], "memory"), (sizes[0], "auto"), (sizes[1], "auto")]:
        spark_model, seconds = _fit(_generated(spark, rows), 2, data)
        summary = spark_model.training_summary
        row = {
            "figure": "memory", "rows": rows, "data": data,
            "paths": sorted({r["data"] for r in summary}),
            "partition_mb": round(rows / 2 * FEATURES * 4 / 2**20, 1),
            "peak_rss_anon_mb": round(max(r["peak_rss_anon_mb"] for r in summary), 1),
            "bytes_spilled_mb": round(max(r["bytes_spilled"] for r in summary) / 2**20, 1),
            "input_wait_s": round(max(r["input_wait_s"] for r in summary), 2),
            "train_s": round(max(r["train_s"] for r in summary), 2), "seconds": round(seconds, 1),
        }
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


def fixed_cost(frame, data, refit):
    """Fits of 1 and 3 epochs: each of a new model, or (`refit`) all of one SparkModel.

    A new model has new layer names, so the workers trace its training step
    again; a refit reuses the step they traced (sparkeras.worker.warm_model).
    """
    spark_model, _ = _fit(frame, 1, data)  # warm: the frame's cache and the workers' imports
    kept = spark_model if refit else None
    t1 = _fit(frame, 1, data, kept)[1]
    t3 = _fit(frame, 3, data, kept)[1]
    row = {"figure": "fixed_cost", "data": data, "model": "refit" if refit else "new",
           "t1_s": round(t1, 2), "t3_s": round(t3, 2),
           "per_epoch_s": round((t3 - t1) / 2, 2), "intercept_s": round((3 * t1 - t3) / 2, 2)}
    print(json.dumps(row), flush=True)
    return row


def _drain(batches):
    """A job's task that reads its partition and trains nothing: one row, the rows read."""
    import pyarrow as pa

    yield pa.RecordBatch.from_pydict({"rows": [sum(batch.num_rows for batch in batches)]})


def _jvm_cpu_seconds(spark):
    pid = spark._jvm.java.lang.ProcessHandle.current().pid()
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spark_floor(spark, frame, jobs=5):
    """What any fit pays Spark before it trains: a job, and reading its frame once.

    The frame is read as the training job reads it (sparkeras.placement):
    one task per worker over the 6 cached partitions, coalesced.
    """
    import statistics

    from sparkeras.placement import worker_frame

    grouped, _ = worker_frame(frame, 2)
    row = {"figure": "spark_floor"}
    for name, job in [("empty_job", spark.range(2, numPartitions=2)), ("read_job", grouped)]:
        walls, cpu = [], []
        for attempt in range(jobs + 1):
            cpu_before, start = _jvm_cpu_seconds(spark), time.perf_counter()
            rows = job.mapInArrow(_drain, "rows long").collect()
            if attempt:  # the first is a warm-up
                walls.append(time.perf_counter() - start)
                cpu.append(_jvm_cpu_seconds(spark) - cpu_before)
        assert sum(r.rows for r in rows) == (2 if name == "empty_job" else frame.count())
        row[f"{name}_s"] = round(statistics.median(walls), 2)
        row[f"{name}_jvm_cpu_s"] = round(statistics.median(cpu), 2)
    print(json.dumps(row), flush=True)
    return row


def five_epochs(frame, test, rows, single, data="auto"):
    spark_model, seconds = _fit(frame, 5, data)
    accuracy = spark_model.model.evaluate(*test, verbose=0, return_dict=True)["accuracy"]
    row = {"figure": "five_epochs", "data": data, "rows": rows, "seconds": round(seconds, 1),
           "samples_per_s": round(rows * 5 / seconds), "accuracy": round(accuracy, 4),
           "single_samples_per_s": round(single["samples_per_s"]),
           "single_accuracy": round(single["accuracy"], 4),
           "ratio": round(rows * 5 / seconds / single["samples_per_s"], 2),
           "paths": sorted({r["data"] for r in spark_model.training_summary})}
    print(json.dumps(row), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=50_000)
    parser.add_argument("--large", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-only", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.small, args.large, args.rows = 20_000, 80_000, 12_000

    import sparkeras

    spark = sparkeras.get_spark("local[2]")
    sparkeras.session.wait_for_python_workers(spark)
    results = [] if args.skip_memory else memory(spark, (args.small, args.large))
    if args.memory_only:
        return _summary(spark, results)
    frame = to_frame(spark, *make_data(args.rows)).repartition(6).cache()
    frame.count()
    results.append(spark_floor(spark, frame))
    results.append(fixed_cost(frame, "auto", refit=False))
    results.append(fixed_cost(frame, "auto", refit=True))
    results.append(fixed_cost(frame, "stream", refit=True))
    single = max((run_single_subprocess(args.rows, 5, threads) for threads in (0, 1)),
                 key=lambda r: r["samples_per_s"])
    test = make_data(10_000, seed=1)
    results.append(five_epochs(frame, test, args.rows, single))
    # The accuracy of the streaming path's buffer shuffle against the full in-memory one.
    results.append(five_epochs(frame, test, args.rows, single, data="memory"))
    _summary(spark, results)


def _summary(spark, results):
    spark.stop()
    print("\n| figure | value |\n| --- | --- |")
    for row in results:
        values = {k: v for k, v in row.items() if k != "figure"}
        print(f"| {row['figure']} | {json.dumps(values)} |")


if __name__ == "__main__":
    main()
