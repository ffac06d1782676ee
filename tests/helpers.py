"""Shared test helpers: small models, generated data, Spark job counting."""

import numpy as np


def dense_classifier(inputs=64, classes=10, seed=0, lr=0.01, hidden=32):
    """A compiled MLP classifier (Adam) with sparse integer labels."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((inputs,)), keras.layers.Dense(hidden, activation="relu"),
         keras.layers.Dense(classes, activation="softmax")]
    )
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def digits_arrays(frame):
    """The numpy features and labels of a digits DataFrame, in row order."""
    pdf = frame.toPandas()
    return np.stack(pdf["features"].to_numpy()).astype("float32"), pdf["label"].to_numpy()


def job_count(spark):
    """How many Spark jobs this session has started so far."""
    return int(spark.sparkContext._jsc.sc().statusStore().jobsList(None).size())
