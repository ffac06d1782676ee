"""elephas' `Mode` and `Frequency` enums (`elephas.enums.modes`, `elephas.enums.frequency`).

Neutral package. Members are strings, so they compare equal to, and pass
anywhere as, "synchronous", "epoch" and the other values.

Example:
>>> from sparkeras.compat.elephas.enums.modes import Mode
>>> from sparkeras.compat.elephas.enums.frequency import Frequency
>>> Mode.HOGWILD == "hogwild", str(Frequency.BATCH)
(True, 'batch')
"""

from sparkeras.compat.elephas.enums.frequency import Frequency
from sparkeras.compat.elephas.enums.modes import Mode

__all__ = ["Frequency", "Mode"]
