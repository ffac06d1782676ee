"""The str enum base of elephas' enums (neutral)."""

from enum import Enum


class StrEnum(str, Enum):
    """A str enum whose str() is its value, as `enum.StrEnum` (Python 3.11+)."""

    def __str__(self):
        return str(self.value)
