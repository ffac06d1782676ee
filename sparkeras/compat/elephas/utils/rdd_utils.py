"""RDDs of `(x, y)` pairs and of `LabeledPoint`s from numpy arrays, and back.

Neutral module (`elephas.utils.rdd_utils`): the functions run on the driver,
the ones they map over RDDs run on the executors and copy plain values only.
"""

import numpy as np

from sparkeras.compat.elephas.mllib.adapter import from_vector, to_vector

__all__ = [
    "encode_label",
    "from_labeled_point",
    "lp_to_simple_rdd",
    "to_labeled_point",
    "to_simple_rdd",
]


_SLICE_BYTES = 8 * 2**20


def to_simple_rdd(sc, features, labels):
    """Converts numpy arrays of features and labels into an RDD of `(x, y)` pairs.

    The rows are sliced so that no task carries more than about 8 MB of them
    (at least one slice per default parallelism, as Spark's own default):
    each slice travels inside its task, through the driver's heap.

    Example:
    >>> rdd = to_simple_rdd(spark.sparkContext, x_train, y_train)
    >>> x, y = rdd.first()
    """
    nbytes = np.asarray(features).nbytes + np.asarray(labels).nbytes
    return parallelize_rows(sc, list(zip(features, labels, strict=True)), nbytes)


def parallelize_rows(sc, rows, nbytes):
    """An RDD of `rows` (about `nbytes` in all) in slices of at most about 8 MB.

    Example:
    >>> parallelize_rows(sc, list(x_test), x_test.nbytes).getNumPartitions()
    """
    slices = max(sc.defaultParallelism, -(-int(nbytes) // _SLICE_BYTES))
    return sc.parallelize(rows, slices)


def to_labeled_point(sc, features, labels, categorical=False):
    """Converts numpy arrays into an RDD of MLlib `LabeledPoint`s.

    Args:
        sc: The SparkContext.
        features: One row of features per sample (flattened into the vector).
        labels: One label per sample; with `categorical=True` one-hot rows,
            whose class index becomes the label.
        categorical: Whether `labels` are one-hot rows.

    Example:
    >>> lp_rdd = to_labeled_point(sc, x_train, y_train, categorical=True)
    >>> lp_rdd.first().label
    5.0
    """
    from pyspark.mllib.regression import LabeledPoint

    points = [
        LabeledPoint(
            float(np.argmax(y)) if categorical else float(np.asarray(y).reshape(-1)[0]),
            to_vector(np.ravel(np.asarray(x, dtype="float64"))),
        )
        for x, y in zip(features, labels, strict=True)
    ]
    return sc.parallelize(points)


def from_labeled_point(rdd, categorical=False, nb_classes=None):
    """Collects an RDD of `LabeledPoint`s into numpy `(features, labels)`.

    Args:
        rdd: RDD of `LabeledPoint`s.
        categorical: Return the labels one-hot encoded.
        nb_classes: Classes of the one-hot rows; by default the largest
            label plus one.

    Example:
    >>> x, y = from_labeled_point(lp_rdd, categorical=True, nb_classes=10)
    """
    pairs = rdd.map(_point_pair).collect()
    features = np.array([x for x, _ in pairs])
    labels = np.array([y for _, y in pairs])
    if categorical:
        classes = nb_classes or int(labels.max()) + 1
        labels = np.stack([encode_label(label, classes) for label in labels])
    return features, labels


def encode_label(label, nb_classes):
    """One-hot encodes one class label (an int, or a float without decimals).

    Example:
    >>> encode_label(2, 4)
    array([0., 0., 1., 0.])
    """
    label = int(label)
    if not 0 <= label < nb_classes:
        raise ValueError(
            f"A class label must be in [0, nb_classes={nb_classes}). Received: label={label}"
        )
    encoded = np.zeros(nb_classes)
    encoded[label] = 1.0
    return encoded


def lp_to_simple_rdd(lp_rdd, categorical=False, nb_classes=None):
    """Converts an RDD of `LabeledPoint`s into an RDD of `(x, y)` numpy pairs.

    Args:
        lp_rdd: RDD of `LabeledPoint`s.
        categorical: One-hot encode the labels.
        nb_classes: Classes of the one-hot rows; by default the largest
            label plus one (a Spark job finds it).

    Example:
    >>> rdd = lp_to_simple_rdd(lp_rdd, categorical=True, nb_classes=10)
    """
    if categorical and not nb_classes:
        nb_classes = int(lp_rdd.map(lambda point: point.label).max()) + 1
    return lp_rdd.map(_pair_factory(bool(categorical), nb_classes))


def _point_pair(point):
    return from_vector(point.features), point.label


def _pair_factory(categorical, nb_classes):
    """The executor function making `(x, y)` of a `LabeledPoint` (plain values only)."""

    def pair(point):
        label = encode_label(point.label, nb_classes) if categorical else point.label
        return from_vector(point.features), label

    return pair
