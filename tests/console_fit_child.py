"""A fit as a user runs it in a terminal, for tests/driver/test_progress.py (run under a pty).

The session has Spark's console progress bar on; the model has a layer that
warns every time it is traced on a worker. The script prints markers the
test looks for around the fit, then runs a slow job so that Spark's own bar
shows again once the fit is over.
"""

import os
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def noisy_model():
    import keras

    class NoisyDense(keras.layers.Dense):
        def call(self, inputs):
            warnings.warn("NoisyDense says hello from a worker", UserWarning, stacklevel=2)
            return super().call(inputs)

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            NoisyDense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model, {"NoisyDense": NoisyDense}


def main():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.showConsoleProgress", "true")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    import sparkeras
    from sparkeras.demo import digits_frames

    train_df, test_df = digits_frames(spark)
    for _ in range(2):
        train_df = train_df.union(train_df)
    train_df = train_df.repartition(2).cache()
    train_df.count()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the driver's own trace of NoisyDense
        model, custom = noisy_model()
    spark_model = sparkeras.SparkModel(model, num_workers=2, custom_objects=custom)
    print("FIT START", flush=True)
    spark_model.fit(train_df, epochs=2, batch_size=16, validation_data=test_df, verbose=1)
    print("FIT DONE", flush=True)
    spark.sparkContext.parallelize(range(2), 2).map(lambda x: time.sleep(2.0)).count()
    print("AFTER", flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
