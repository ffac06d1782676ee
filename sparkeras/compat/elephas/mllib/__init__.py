"""`elephas.mllib`: numpy arrays to and from MLlib matrices and vectors (neutral)."""

from sparkeras.compat.elephas.mllib.adapter import from_matrix, from_vector, to_matrix, to_vector

__all__ = ["from_matrix", "from_vector", "to_matrix", "to_vector"]
