"""`elephas.ml`: DataFrame adapters and the Spark ML param mixins (neutral)."""

from sparkeras.compat.elephas.ml import params
from sparkeras.compat.elephas.ml.adapter import df_to_simple_rdd, from_data_frame, to_data_frame
from sparkeras.compat.elephas.ml.params import *  # noqa: F403 (elephas exports them here too)

__all__ = ["df_to_simple_rdd", "from_data_frame", "to_data_frame", *params.__all__]
