"""Peak anonymous memory of a streaming worker against its partition size, without Spark.

Runs, for each row count, one fresh process (glibc's allocator settings are
process-wide) that feeds a `TrainingInput` generated Arrow batches of
10,000 rows x 784 float32 plus an int label, streams 2 epochs through a
`StreamReplica` (an MLP 784-64-10, batch 64, `shuffle_buffer=10_000`) and
samples RssAnon every 10 ms in a thread. Modes:
  fixed      what the worker does: glibc's memory-map threshold fixed at 1 MiB;
  dynamic    glibc's default, dynamic threshold (`release_large_allocations` off);
  no-train   fixed threshold, the chunks consumed without training.
It prints one JSON line per run: peak RssAnon, growth over the process
before the stream, and rows trained per second.

Usage:
    python bench/stream_memory.py                            # 25,000 vs 400,000 rows, every mode
    python bench/stream_memory.py --rows 25000 100000 --modes fixed dynamic
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

FEATURES, ARROW_ROWS, BATCH, BUFFER = 784, 10_000, 64, 10_000


def _batches(rows):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(0)
    for start in range(0, rows, ARROW_ROWS):
        count = min(ARROW_ROWS, rows - start)
        offsets = pa.array(np.arange(count + 1, dtype=np.int32) * FEATURES)
        values = pa.array(rng.random(count * FEATURES, dtype=np.float32))
        labels = pa.array((np.arange(start, start + count) % 10).astype("int32"))
        yield pa.RecordBatch.from_arrays([pa.ListArray.from_arrays(offsets, values), labels],
                                         names=["x", "y"])


def _model():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def run(rows, mode):
    """One measurement in this process: a dict of the figures."""
    os.environ["SPARK_LOCAL_DIRS"] = tempfile.mkdtemp(prefix="stream-memory-")
    from sparkeras.data.spec import DataSpec, FieldSpec
    from sparkeras.worker import input_stream
    from sparkeras.worker.stream_replica import StreamReplica

    if mode == "dynamic":
        input_stream.release_large_allocations = lambda: False
    spec = DataSpec(
        inputs=(FieldSpec(("x",), ("features",), ("array",), (FEATURES,), (FEATURES,),
                          "float32", "model input 0"),),
        targets=(FieldSpec(("y",), ("label",), ("number",), (1,), (), "int32",
                           "model output 0"),),
        prediction_shapes=((10,),),
    )
    peak = [0.0]

    def sample():
        while True:
            peak[0] = max(peak[0], input_stream.rss_anon_mb())
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()
    model = _model()
    before = input_stream.rss_anon_mb()
    stream = input_stream.TrainingInput(_batches(rows), spec, batch_size=BATCH, seed=0,
                                        shuffle_buffer=BUFFER)
    replica = StreamReplica(model, stream, BATCH)
    start, trained = time.perf_counter(), 0
    try:
        for epoch in range(2):
            replica.start_epoch(epoch)
            if mode == "no-train":
                while stream.next_rows(10**9) is not None:
                    pass
            else:
                trained += replica.train_steps(0, 10**12)[1]
    finally:
        stream.close()
    seconds = time.perf_counter() - start
    return {"rows": rows, "mode": mode, "partition_mb": round(rows * FEATURES * 4 / 2**20),
            "peak_rss_anon_mb": round(peak[0]), "growth_mb": round(peak[0] - before),
            "rows_per_s": round(trained / seconds), "seconds": round(seconds, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[25_000, 400_000])
    parser.add_argument("--modes", nargs="+", default=["fixed", "dynamic", "no-train"],
                        choices=["fixed", "dynamic", "no-train"])
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # rows mode, in a child
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run(int(args.one[0]), args.one[1])), flush=True)
        return
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for mode in args.modes:
        for rows in args.rows:
            out = subprocess.run([sys.executable, __file__, "--one", str(rows), mode], env=env,
                                 capture_output=True, text=True, check=True).stdout
            print(out.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
