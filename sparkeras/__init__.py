"""sparkeras: train and serve Keras 3 models on Spark DataFrames.

Example:
>>> import sparkeras
>>> spark = sparkeras.get_spark("local[2]")
"""

from sparkeras.session import get_spark

__all__ = ["get_spark"]
__version__ = "0.1.0"
