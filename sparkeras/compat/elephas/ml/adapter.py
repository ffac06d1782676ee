"""numpy arrays to Spark DataFrames and back, and DataFrames to `(x, y)` RDDs.

Neutral module (`elephas.ml.adapter`): the functions run on the driver, the
ones they map over rows run on the executors and copy plain values only.
"""

import numpy as np

from sparkeras.compat.elephas.utils.rdd_utils import encode_label

__all__ = ["df_to_simple_rdd", "from_data_frame", "to_data_frame"]


def to_data_frame(sc, features, labels, categorical=False):
    """Converts numpy arrays into a DataFrame of `features` (ml vectors) and `label` (double).

    With `categorical=True` the labels are one-hot rows and `label` gets
    their class index, as elephas does.

    Example:
    >>> df = to_data_frame(spark.sparkContext, x_train, y_train, categorical=True)
    """
    from pyspark.ml.linalg import Vectors
    from pyspark.sql import SparkSession

    del sc  # the active session (built on it) makes the DataFrame
    rows = [
        (
            Vectors.dense(np.ravel(x).astype(float)),
            float(np.argmax(y)) if categorical else float(np.asarray(y).reshape(-1)[0]),
        )
        for x, y in zip(features, labels, strict=True)
    ]
    return SparkSession.builder.getOrCreate().createDataFrame(rows, ["features", "label"])


def from_data_frame(df, categorical=False, nb_classes=None):
    """Collects a DataFrame's `features` and `label` columns into numpy arrays.

    Args:
        df: A DataFrame with `features` (vectors or arrays) and `label`.
        categorical: Return the labels one-hot encoded.
        nb_classes: Classes of the one-hot rows; by default the largest
            label plus one.

    Example:
    >>> x, y = from_data_frame(df, categorical=True, nb_classes=10)
    """
    rows = df.select("features", "label").collect()
    features = np.array([_dense(row[0]) for row in rows])
    labels = np.array([row[1] for row in rows], dtype="float64")
    if categorical:
        classes = nb_classes or int(labels.max()) + 1
        labels = np.stack([encode_label(label, classes) for label in labels])
    return features, labels


def df_to_simple_rdd(df, categorical=False, nb_classes=None, features_col="features",
                     label_col="label"):
    """Converts a DataFrame into an RDD of `(x, y)` numpy pairs, as `to_simple_rdd` makes.

    Args:
        df: A DataFrame with a features column (ml or MLlib vectors, or
            arrays) and a numeric label column.
        categorical: One-hot encode the labels (class indices).
        nb_classes: Classes of the one-hot rows; by default the largest
            label plus one (a Spark job finds it).
        features_col: The features column.
        label_col: The label column.

    Example:
    >>> rdd = df_to_simple_rdd(df, categorical=True, nb_classes=10)
    """
    from pyspark.sql import functions

    selected = df.select(features_col, label_col)
    if categorical and not nb_classes:
        nb_classes = int(selected.agg(functions.max(label_col)).first()[0]) + 1
    return selected.rdd.map(_row_pair_factory(bool(categorical), nb_classes))


def _dense(value):
    """A vector (ml or MLlib) or an array cell as a 1-D numpy array."""
    return value.toArray() if hasattr(value, "toArray") else np.asarray(value, dtype="float64")


def _row_pair_factory(categorical, nb_classes):
    """The executor function making `(x, y)` of a `(features, label)` row (plain values)."""

    def pair(row):
        features, label = row
        return _dense(features), encode_label(label, nb_classes) if categorical else float(label)

    return pair
