"""`elephas.utils`: its RDD helpers (`rdd_utils`) and model helpers (`model_utils`).

Neutral module. As in elephas, the RDD helpers are importable from here too.
"""

from sparkeras.compat.elephas.utils import rdd_utils
from sparkeras.compat.elephas.utils.rdd_utils import *  # noqa: F403 (elephas exports them here)

__all__ = list(rdd_utils.__all__)
