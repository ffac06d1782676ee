"""The `sparkeras demo` job: a digits classifier trained on an embedded Spark.

Driver-side module. It uses scikit-learn's bundled digits (no download).
"""

import numpy as np


def digits_frames(spark, test_fraction=0.25, seed=0):
    """Returns `(train_df, test_df)` of the 8x8 digits: `features` array, `label` int.

    Example:
    >>> train_df, test_df = digits_frames(spark)
    """
    import pandas as pd
    from sklearn.datasets import load_digits

    digits = load_digits()
    features = (digits.data / 16.0).astype("float32")
    order = np.random.default_rng(seed).permutation(len(features))
    frame = pd.DataFrame({"features": list(features[order]), "label": digits.target[order]})
    cut = int(len(frame) * (1 - test_fraction))
    return spark.createDataFrame(frame.iloc[:cut]), spark.createDataFrame(frame.iloc[cut:])


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

    Example:
    >>> run_demo("local[2]", epochs=5)["accuracy"] > 0.9
    True
    """
    import sparkeras

    spark = sparkeras.get_spark(master)
    train_df, test_df = digits_frames(spark)
    workers = min(num_workers, spark.sparkContext.defaultParallelism)
    spark_model = sparkeras.SparkModel(digits_model(), num_workers=workers)
    print(f"Training on {train_df.count()} rows with {workers} workers for {epochs} epochs")
    spark_model.fit(train_df, epochs=epochs, batch_size=32, validation_data=test_df, verbose=2)
    metrics = spark_model.evaluate(test_df)
    print(f"Test accuracy: {metrics['accuracy']:.4f}  test loss: {metrics['loss']:.4f}")
    spark_model.save(output)
    print(f"Saved the model to {output}")
    return metrics
