"""Images as input: PNG bytes with decode= vs the same pixels as an array<float> column.

Generates 32x32 RGB pictures (two classes: the dominant colour channel),
keeps them as PNG bytes in a binary column (as `spark.read.format("binaryFile")`
gives them, decoded on the executors by a Pillow `decode=` function) and as
`array<float>` columns of 3,072 values, then trains the same small CNN on
each, on an embedded `local[2]` Spark with 2 workers. Both frames are cached
and counted first, and one warm-up fit runs before the timed ones; timed fits
alternate between the two inputs and the best of each is kept.

It prints a markdown table and the ratio binary/array of samples/s (fit
samples over the fit's wall time, fixed costs included).

Usage:
    python bench/images.py                 # 20,000 pictures, 3 epochs, 2 runs each
    python bench/images.py --rows 2000 --runs 1
"""

import argparse
import io
import time

import numpy as np

from sparkeras.demo import coloured_pictures, png_bytes  # noqa: E402

SIDE, CLASSES, BATCH = 32, 2, 64


def png_to_array(values):
    """PNG bytes to (n, 32, 32, 3) uint8: the decode function the binary column uses."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(v)).convert("RGB")) for v in values])




def make_model(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((SIDE, SIDE, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(CLASSES, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def timed_fit(frame, epochs, decode):
    from sparkeras import SparkModel

    spark_model = SparkModel(make_model(), num_workers=2)
    start = time.perf_counter()
    history = spark_model.fit(frame, "image", "label", epochs=epochs, batch_size=BATCH,
                              verbose=0, decode=decode)
    seconds = time.perf_counter() - start
    return seconds, history.history["accuracy"][-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()

    import pandas as pd

    import sparkeras

    # The array<float> frame travels from pandas through the driver's JVM: 20,000
    # rows of 3,072 floats overflow the default 1 GB heap.
    spark = sparkeras.get_spark("local[2]", app_name="sparkeras-bench-images",
                                conf={"spark.driver.host": "127.0.0.1",
                                      "spark.driver.memory": "4g"})
    sparkeras.session.wait_for_python_workers(spark)
    pixels, label = coloured_pictures(args.rows, side=SIDE, classes=CLASSES)
    pngs = [png_bytes(p) for p in pixels]
    binary = spark.createDataFrame(pd.DataFrame({"image": pngs, "label": label}))
    arrays = spark.createDataFrame(pd.DataFrame({
        "image": list(pixels.reshape(args.rows, -1).astype("float32")), "label": label}))
    frames = {"binary PNG + decode=": (binary.repartition(2).cache(), png_to_array),
              "array<float>": (arrays.repartition(2).cache(), None)}
    for frame, _ in frames.values():
        frame.count()
    timed_fit(frames["array<float>"][0], 1, None)  # warm-up: workers, imports
    best = {}
    for _ in range(args.runs):
        for name, (frame, decode) in frames.items():
            seconds, accuracy = timed_fit(frame, args.epochs, decode)
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, accuracy)
    print(f"\n{args.rows:,} pictures of {SIDE}x{SIDE}x3, {args.epochs} epochs, 2 workers, "
          f"batch {BATCH}, best of {args.runs}; PNG bytes {sum(map(len, pngs)) / 2**20:.1f} MB\n")
    print("| input | fit seconds | samples/s | final accuracy |")
    print("|---|---:|---:|---:|")
    rates = {}
    for name, (seconds, accuracy) in best.items():
        rates[name] = args.rows * args.epochs / seconds
        print(f"| {name} | {seconds:.1f} | {rates[name]:,.0f} | {accuracy:.4f} |")
    ratio = rates["binary PNG + decode="] / rates["array<float>"]
    print(f"\nbinary with decode= / array<float> samples/s: {ratio:.2f}x")
    spark.stop()


if __name__ == "__main__":
    main()
