"""elephas' `Mode` (`elephas.enums.modes`): how workers share weights (neutral)."""

from sparkeras.compat.elephas.enums._base import StrEnum

__all__ = ["Mode"]


class Mode(StrEnum):
    """How workers share weights: "synchronous", "asynchronous" or "hogwild".

    Example:
    >>> AsynchronousSparkModel(model, mode=Mode.HOGWILD)
    """

    SYNCHRONOUS = "synchronous"
    ASYNCHRONOUS = "asynchronous"
    HOGWILD = "hogwild"
