"""The `sparkeras demo` job: a digits classifier trained on an embedded Spark.

Driver-side module. It uses scikit-learn's bundled digits (no download), and
makes small coloured pictures for image examples.
"""

import numpy as np


def coloured_pictures(rows, side=32, classes=2, seed=0):
    """RGB pictures whose class is their dominant colour channel, and the labels.

    Returns `(pixels, labels)`: `(rows, side, side, 3)` uint8 and `(rows,)`
    ints from 0 to `classes - 1` (at most 3: red, green, blue).

    Example:
    >>> pixels, labels = coloured_pictures(100, side=16)
    >>> pixels.shape, pixels.dtype
    ((100, 16, 16, 3), dtype('uint8'))
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, rows)
    pixels = rng.integers(0, 100, size=(rows, side, side, 3))
    pixels[np.arange(rows), :, :, labels] += 120
    return pixels.astype("uint8"), labels


def png_bytes(pixels):
    """One picture, `(H, W, 3)` uint8, as PNG bytes (needs Pillow).

    Example:
    >>> frame = pd.DataFrame({"image": [png_bytes(p) for p in pixels], "label": labels})
    """
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def digits_frames(spark, test_fraction=0.25, seed=0, validation_fraction=0.0):
    """Splits the 8x8 digits into DataFrames: `features` array, `label` int.

    Returns `(train_df, test_df)`, or `(train_df, val_df, test_df)` when
    `validation_fraction` > 0; the splits never share a row.

    Example:
    >>> train_df, test_df = digits_frames(spark)
    >>> train_df, val_df, test_df = digits_frames(spark, validation_fraction=0.15)
    """
    import pandas as pd
    from sklearn.datasets import load_digits

    digits = load_digits()
    features = (digits.data / 16.0).astype("float32")
    order = np.random.default_rng(seed).permutation(len(features))
    frame = pd.DataFrame({"features": list(features[order]), "label": digits.target[order]})
    test_cut = int(len(frame) * (1 - test_fraction))
    validation_cut = int(len(frame) * (1 - test_fraction - validation_fraction))
    cuts = [0, validation_cut, test_cut] if validation_fraction else [0, test_cut]
    ends = [*cuts[1:], len(frame)]
    return tuple(
        spark.createDataFrame(frame.iloc[start:end]) for start, end in zip(cuts, ends, strict=True)
    )


def digits_model(seed=0):
    """A small compiled MLP for the 64-pixel digits.

    Example:
    >>> model = digits_model()
    """
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def run_demo(master="local[*]", epochs=10, num_workers=2, output="sparkeras-demo.keras"):
    """Trains, evaluates and saves the digits classifier; returns the test metrics.

    The fit sees the training rows and reports its validation metrics
    (`val_*`) on a validation split; the test rows, held out from both, are
    evaluated once, after the fit.

    Example:
    >>> run_demo("local[2]", epochs=5)["accuracy"] > 0.9
    True
    """
    import sparkeras

    spark = sparkeras.get_spark(master)
    train_df, val_df, test_df = digits_frames(spark, validation_fraction=0.15)
    workers = min(num_workers, spark.sparkContext.defaultParallelism)
    spark_model = sparkeras.SparkModel(digits_model(), num_workers=workers)
    print(
        f"Training on {train_df.count()} rows ({val_df.count()} validation rows, "
        f"{test_df.count()} test rows held out) with {workers} workers for {epochs} epochs"
    )
    spark_model.fit(train_df, epochs=epochs, batch_size=32, validation_data=val_df, verbose=2)
    metrics = spark_model.evaluate(test_df)
    print(
        f"Test accuracy (held-out rows): {metrics['accuracy']:.4f}  "
        f"test loss: {metrics['loss']:.4f}"
    )
    spark_model.save(output)
    print(f"Saved the model to {output}")
    return metrics
