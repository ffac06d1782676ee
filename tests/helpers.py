"""Shared test helpers: small models, generated data, Spark job counting, paths."""

import os

import numpy as np

# tests/, where the helper modules and the *_child.py scripts are, and the repository.
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TESTS_DIR)


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


def cached_digits(session):
    """scikit-learn's digits as cached (train, test) DataFrames of `session`."""
    from sparkeras.demo import digits_frames

    train_df, test_df = digits_frames(session)
    return train_df.cache(), test_df.cache()


def digits_arrays(frame):
    """The numpy features and labels of a digits DataFrame, in row order."""
    pdf = frame.toPandas()
    return np.stack(pdf["features"].to_numpy()).astype("float32"), pdf["label"].to_numpy()


def job_count(spark):
    """How many Spark jobs this session has started so far."""
    return int(spark.sparkContext._jsc.sc().statusStore().jobsList(None).size())
