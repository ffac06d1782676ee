"""numpy arrays to and from MLlib matrices and vectors (`elephas.mllib.adapter`).

Neutral module: numpy and `pyspark.mllib.linalg` only, so executors use it too.
"""

import numpy as np

__all__ = ["from_matrix", "from_vector", "to_matrix", "to_vector"]


def to_matrix(np_array):
    """A 2-D numpy array as a dense MLlib `Matrix` (same rows and columns).

    Example:
    >>> to_matrix(np.eye(2)).numRows
    2
    """
    from pyspark.mllib.linalg import Matrices

    array = np.asarray(np_array)
    if array.ndim != 2:
        raise ValueError(
            "An MLlib Matrix can only be made from a 2-D numpy array. "
            f"Received: an array with shape {array.shape}"
        )
    # Matrices.dense reads the values column by column.
    return Matrices.dense(array.shape[0], array.shape[1], array.ravel(order="F"))


def from_matrix(matrix):
    """An MLlib `Matrix` as a 2-D numpy array.

    Example:
    >>> from_matrix(to_matrix(np.eye(2))).shape
    (2, 2)
    """
    return matrix.toArray()


def to_vector(np_array):
    """A 1-D numpy array as a dense MLlib `Vector`.

    Example:
    >>> to_vector(np.array([1.0, 2.0]))
    DenseVector([1.0, 2.0])
    """
    from pyspark.mllib.linalg import Vectors

    array = np.asarray(np_array)
    if array.ndim != 1:
        raise ValueError(
            "An MLlib Vector can only be made from a 1-D numpy array. "
            f"Received: an array with shape {array.shape}"
        )
    return Vectors.dense(array)


def from_vector(vector):
    """An MLlib (or Spark ML) `Vector` as a 1-D numpy array.

    Example:
    >>> from_vector(to_vector(np.array([1.0, 2.0])))
    array([1., 2.])
    """
    return vector.toArray()
