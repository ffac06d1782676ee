"""Per-connection keys and frame tags derived from the per-fit secret.

Neutral module (driver and executors). The secret never travels: each side
sends a fresh random nonce when a connection opens, both derive a session key
from the secret and the two nonces, and every frame carries an HMAC-SHA256 tag
made with that key. See docs/wire-format.md.
"""

import hashlib
import hmac
import secrets

__all__ = [
    "MIN_SECRET_BYTES",
    "NONCE_BYTES",
    "TAG_BYTES",
    "check_secret",
    "new_nonce",
    "session_key",
    "tag",
    "tag_matches",
]

MIN_SECRET_BYTES = 16
NONCE_BYTES = 32
TAG_BYTES = 32
_SESSION_LABEL = b"sparkeras-ps session key v1"


def check_secret(secret):
    """Returns `secret` as bytes, or raises if it is missing or too short.

    The error names the type and length received, never the value.

    Args:
        secret: The per-fit secret shared by the server and its clients.

    Returns:
        The secret as `bytes`.

    Raises:
        ValueError: If the secret is not bytes or shorter than 16 bytes.

    Example:
    >>> check_secret(secrets.token_bytes(32))
    """
    if not isinstance(secret, (bytes, bytearray)) or len(secret) < MIN_SECRET_BYTES:
        size = f"{len(secret)} bytes" if isinstance(secret, (bytes, bytearray)) else "no bytes"
        raise ValueError(
            f"The parameter-server secret must be bytes of at least {MIN_SECRET_BYTES} bytes; "
            "make one per fit with secrets.token_bytes(32). "
            f"Received: secret of type {type(secret).__name__} ({size})."
        )
    return bytes(secret)


def new_nonce():
    """A fresh random nonce for one side of a connection."""
    return secrets.token_bytes(NONCE_BYTES)


def session_key(secret, client_nonce, server_nonce):
    """The key that tags every frame of one connection."""
    return hmac.new(secret, _SESSION_LABEL + client_nonce + server_nonce, hashlib.sha256).digest()


def tag(key, *parts):
    """HMAC-SHA256 of the concatenated `parts` under `key`."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


def tag_matches(key, received, *parts):
    """Whether `received` is the tag of `parts`, compared in constant time."""
    return hmac.compare_digest(tag(key, *parts), bytes(received))
