"""One-time warnings of the elephas layer: options it accepts but does not use.

Neutral module (driver in practice): the standard library only.
"""

import warnings

_warned = set()


class ElephasCompatWarning(UserWarning):
    """An elephas option that sparkeras accepts but does not use (shown once per option)."""


def warn_once(option, message):
    """Warns with an `ElephasCompatWarning` the first time `option` comes up."""
    if option in _warned:
        return
    _warned.add(option)
    warnings.warn(f"sparkeras.compat.elephas: {message}", ElephasCompatWarning, stacklevel=4)


def ignored(where, names):
    """Warns once for each of `names`, options of `where` that change nothing here."""
    for name in names:
        warn_once(
            f"{where}:{name}",
            f"{where} option {name!r} is an elephas (or Keras worker-side) option that "
            "sparkeras does not use; it is ignored and training runs as without it.",
        )
