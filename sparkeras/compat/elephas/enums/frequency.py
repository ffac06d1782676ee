"""elephas' `Frequency` (`elephas.enums.frequency`): when workers exchange weights (neutral)."""

from sparkeras.compat.elephas.enums._base import StrEnum

__all__ = ["Frequency"]


class Frequency(StrEnum):
    """When workers exchange weights: every "epoch" or every "batch".

    Example:
    >>> AsynchronousSparkModel(model, frequency=Frequency.BATCH)
    """

    EPOCH = "epoch"
    BATCH = "batch"
