"""Frames and tensors on the parameter-server wire (format version 1).

Neutral module (driver and executors). A connection opens with two hellos
(magic, version, a random nonce each way); then each request and reply is one
frame: a fixed prefix, an HMAC tag, a small JSON header and a payload of raw
tensor bytes. Nothing is pickled or evaluated: the JSON header names each
tensor's dtype (from a fixed allow-list) and shape, and the payload is those
tensors' bytes, each padded to 64 bytes. The complete format is in
docs/wire-format.md.

The reading side checks sizes before it allocates anything and checks the tag
before it parses the JSON or touches the payload, so a peer without the
secret can make it read at most `FRAME_OVERHEAD + max_header_bytes` bytes.
"""

import json
import math
import struct
from typing import NamedTuple

import numpy as np

from sparkeras.ps import auth

__all__ = [
    "ALIGNMENT",
    "CLIENT_HELLO",
    "DEFAULT_MAX_HEADER_BYTES",
    "ERROR",
    "FRAME_OVERHEAD",
    "HEADER",
    "HELLO_BYTES",
    "MAGIC",
    "PAYLOAD",
    "REPLY",
    "REQUEST",
    "SERVER_HELLO",
    "START",
    "VERSION",
    "CodecError",
    "Message",
    "ProtocolVersionError",
    "encode_error",
    "encode_hello",
    "encode_reply",
    "encode_request",
    "read_frame",
    "read_hello",
]

MAGIC = b"SKPS"
VERSION = 1

# Message kinds (the byte after the version).
REQUEST = 0x01
REPLY = 0x02
ERROR = 0x03
CLIENT_HELLO = 0x10
SERVER_HELLO = 0x11

# Phases a `read_into` callable is asked to fill (see `read_frame`).
START = "start"
HEADER = "header"
PAYLOAD = "payload"

ALIGNMENT = 64
DEFAULT_MAX_HEADER_BYTES = 256 * 1024
_MAX_OP_CHARS = 64
_MAX_NDIM = 32
_ZEROS = bytes(ALIGNMENT)

_HELLO_STABLE = struct.Struct("!4sB")  # magic, version: the same in every version
_HELLO_REST = struct.Struct(f"!B{auth.NONCE_BYTES}s")  # kind, nonce
HELLO_BYTES = _HELLO_STABLE.size + _HELLO_REST.size
_PREFIX = struct.Struct("!4sBBHQIQ")  # magic, version, kind, flags, seq, header, payload
FRAME_OVERHEAD = _PREFIX.size + auth.TAG_BYTES

_DTYPES = frozenset(
    np.dtype(code).newbyteorder(order).str
    for code in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1")
    for order in "<>"
)
_PEERS = {
    CLIENT_HELLO: "the client",
    REQUEST: "the client",
    SERVER_HELLO: "the parameter server",
    REPLY: "the parameter server",
}
_BODY_KEYS = {REQUEST: {"op", "h", "t"}, REPLY: {"h", "t"}, ERROR: {"error", "type", "t"}}


class CodecError(ValueError):
    """A frame, hello or tensor that the wire format refuses.

    Attributes:
        reason: Short refusal key, as counted in `ParameterServer.refusals`:
            "bad_magic", "bad_version", "bad_auth", "replay", "oversized",
            "malformed", "truncated" or "unsupported" (sending side).

    Example:
    >>> raise CodecError("malformed", "Frame kind 9 is not a request. Received: kind=9.")
    """

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


class ProtocolVersionError(CodecError):
    """The peer speaks another version of the wire format.

    Attributes:
        peer_version: The version byte the peer sent.

    Example:
    >>> raise ProtocolVersionError(2, "the parameter server")
    """

    def __init__(self, peer_version, peer="the peer"):
        super().__init__(
            "bad_version",
            f"{peer[0].upper()}{peer[1:]} speaks sparkeras parameter-server wire version "
            f"{peer_version}, this side speaks version {VERSION}. Install the same sparkeras "
            f"version on the driver and on the executors. Received: version={peer_version}.",
        )
        self.peer_version = peer_version


class Message(NamedTuple):
    """One decoded frame.

    Attributes:
        kind: REQUEST, REPLY or ERROR.
        op: The request's operation name; None for replies and errors.
        header: The request's or reply's header dict; for ERROR frames
            `{"error": message, "type": exception class name}`.
        tensors: Decoded numpy arrays, views over one received buffer.
    """

    kind: int
    op: object
    header: dict
    tensors: list


# Hellos ------------------------------------------------------------------


def encode_hello(kind, nonce):
    """The hello a side sends when a connection opens.

    Example:
    >>> sock.sendall(encode_hello(CLIENT_HELLO, auth.new_nonce()))
    """
    return _HELLO_STABLE.pack(MAGIC, VERSION) + _HELLO_REST.pack(kind, nonce)


def read_hello(read_into, kind):
    """Reads the peer's hello and returns its nonce.

    Args:
        read_into: Fills a memoryview from the connection (see `read_frame`).
        kind: The hello kind expected, CLIENT_HELLO or SERVER_HELLO.

    Raises:
        CodecError: "bad_magic" or "malformed".
        ProtocolVersionError: The peer speaks another version; the rest of
            its hello is not read, since its layout may differ.

    Example:
    >>> nonce = read_hello(reader, SERVER_HELLO)
    """
    stable = bytearray(_HELLO_STABLE.size)
    read_into(memoryview(stable), START)
    magic, version = _HELLO_STABLE.unpack(stable)
    _check_magic(magic)
    if version != VERSION:
        raise ProtocolVersionError(version, _PEERS[kind])
    rest = bytearray(_HELLO_REST.size)
    read_into(memoryview(rest), HEADER)
    received_kind, nonce = _HELLO_REST.unpack(rest)
    if received_kind != kind:
        raise CodecError(
            "malformed",
            f"Expected a hello of kind {kind:#04x}. Received: kind={received_kind:#04x}.",
        )
    return nonce


# Frames ------------------------------------------------------------------


def encode_request(seq, key, op, header, tensors):
    """The buffers of one request frame, to send in order.

    Args:
        seq: The request's sequence number on its connection (0, 1, ...).
        key: The connection's session key.
        op: Operation name: 1 to 64 printable ASCII characters.
        header: JSON-able dict of small values (numpy scalars are converted).
        tensors: List or tuple of numpy arrays (or values `np.asarray` accepts).

    Returns:
        A list of bytes-like objects; the tensors' own memory, not copies.

    Raises:
        CodecError: "unsupported" for a bad op, header or tensor dtype.

    Example:
    >>> buffers = encode_request(0, key, "sync", {"round": 0}, model.get_weights())
    """
    if not _valid_op(op):
        raise CodecError(
            "unsupported",
            f"The operation name must be 1 to {_MAX_OP_CHARS} printable ASCII characters. "
            f"Received: op={op!r}.",
        )
    return _encode(REQUEST, seq, key, {"op": op, "h": _check_header(header)}, tensors)


def encode_reply(seq, key, header, tensors):
    """The buffers of one reply frame; arguments as in `encode_request`.

    Example:
    >>> buffers = encode_reply(0, key, {"round": 0}, averaged_weights)
    """
    return _encode(REPLY, seq, key, {"h": _check_header(header)}, tensors)


def encode_error(seq, key, message, error_type):
    """The buffers of an error reply carrying a handler's exception.

    Example:
    >>> buffers = encode_error(0, key, "Unknown request 'x'.", "ValueError")
    """
    return _encode(ERROR, seq, key, {"error": str(message), "type": str(error_type)}, ())


def read_frame(
    read_into, *, key, seq, kinds, max_message_bytes=None, max_header_bytes=DEFAULT_MAX_HEADER_BYTES
):
    """Reads, authenticates and decodes one frame.

    Checks, in this order and before any allocation that depends on them:
    magic, version, kind, flags and sizes (prefix); then reads the header
    and checks the tag; then the sequence number; then parses the JSON and
    the tensor descriptors; only then allocates and reads the payload.

    Args:
        read_into: Called as `read_into(view, phase)`; fills the whole
            memoryview or raises. `phase` is START for the first bytes of
            the frame (where a clean end of stream is no error), HEADER for
            the unauthenticated rest, PAYLOAD for the authenticated payload.
        key: The connection's session key.
        seq: The sequence number this frame must carry.
        kinds: The frame kinds accepted here.
        max_message_bytes: Largest whole frame accepted, or None.
        max_header_bytes: Largest JSON header accepted.

    Returns:
        A `Message`; its tensors are views over one new buffer.

    Raises:
        CodecError: With the refusal reason, before reading further.

    Example:
    >>> message = read_frame(reader, key=key, seq=0, kinds=(REQUEST,))
    """
    fixed = bytearray(FRAME_OVERHEAD)
    read_into(memoryview(fixed), START)
    magic, version, kind, flags, frame_seq, header_len, payload_len = _PREFIX.unpack_from(fixed)
    _check_magic(magic)
    if version != VERSION:
        raise ProtocolVersionError(version, _PEERS[kinds[0]])
    if kind not in kinds or flags != 0:
        raise CodecError(
            "malformed",
            f"Expected a frame of kind {' or '.join(map(str, kinds))} with flags 0. "
            f"Received: kind={kind}, flags={flags}.",
        )
    _check_sizes(header_len, payload_len, max_message_bytes, max_header_bytes)
    raw_header = bytearray(header_len)
    read_into(memoryview(raw_header), HEADER)
    prefix = memoryview(fixed)[: _PREFIX.size]
    if not auth.tag_matches(key, memoryview(fixed)[_PREFIX.size :], prefix, raw_header):
        raise CodecError(
            "bad_auth", "The frame's tag does not match: wrong secret or altered frame."
        )
    if frame_seq != seq:
        raise CodecError(
            "replay", f"Expected sequence number {seq}. Received: seq={frame_seq} (a replay?)."
        )
    body = _parse_body(kind, raw_header)
    layout = _layout(body["t"], payload_len)
    payload = np.empty(payload_len, dtype=np.uint8)
    if payload_len:
        read_into(memoryview(payload), PAYLOAD)
    tensors = [
        payload[offset : offset + count * dtype.itemsize].view(dtype).reshape(shape)
        for offset, dtype, shape, count in layout
    ]
    if kind == ERROR:
        return Message(kind, None, {"error": body["error"], "type": body["type"]}, tensors)
    return Message(kind, body.get("op"), body["h"], tensors)


# Helpers -----------------------------------------------------------------


def _encode(kind, seq, key, body, tensors):
    """Prefix, tag and header in one buffer, then the tensor segments."""
    descriptors, segments, payload_len = _describe(tensors)
    try:
        text = json.dumps({**body, "t": descriptors}, separators=(",", ":"), default=_plain_scalar)
    except (TypeError, ValueError) as error:
        raise CodecError(
            "unsupported",
            "Header values must be JSON-able (str, int, float, bool, None, lists and dicts of "
            f"them); send arrays as tensors. Received: {error}",
        ) from None
    header = text.encode()
    prefix = _PREFIX.pack(MAGIC, VERSION, kind, 0, seq, len(header), payload_len)
    return [prefix + auth.tag(key, prefix, header) + header, *segments]


def _check_header(header):
    """Refuses a header that is not a dict (its values are checked by `_encode`)."""
    if not isinstance(header, dict):
        raise CodecError(
            "unsupported", f"The header must be a dict. Received: {type(header).__name__}."
        )
    return header


def _valid_op(op):
    """Whether `op` is 1 to 64 printable ASCII characters."""
    return (
        isinstance(op, str) and 0 < len(op) <= _MAX_OP_CHARS and op.isascii() and op.isprintable()
    )


def _plain_scalar(value):
    """`json.dumps` fallback: numpy scalars become Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"value of type {type(value).__name__} is not JSON-able")


def _describe(tensors):
    """Descriptors, payload segments and payload length of `tensors`."""
    if not isinstance(tensors, (list, tuple)):
        raise CodecError(
            "unsupported",
            f"Tensors must be a list or tuple of numpy arrays. Received: {type(tensors).__name__}.",
        )
    descriptors, segments, payload_len = [], [], 0
    for index, tensor in enumerate(tensors):
        array = np.asarray(tensor)
        if array.dtype.str not in _DTYPES:
            raise CodecError(
                "unsupported",
                f"Tensor {index} has dtype {array.dtype}, which the wire does not carry "
                "(float16/32/64, int8..64, uint8..64 and bool do). Convert it, for example "
                f"with .astype('float32'). Received: dtype={array.dtype}, shape={array.shape}.",
            )
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        descriptors.append([array.dtype.str, list(array.shape)])
        if array.nbytes:
            segments.append(memoryview(array.reshape(-1).view(np.uint8)))
        padding = -array.nbytes % ALIGNMENT
        if padding:
            segments.append(_ZEROS[:padding])
        payload_len += array.nbytes + padding
    return descriptors, segments, payload_len


def _check_magic(magic):
    if magic != MAGIC:
        raise CodecError(
            "bad_magic",
            f"Not a sparkeras parameter-server message (expected magic {MAGIC!r}). "
            f"Received: {bytes(magic)!r}.",
        )


def _check_sizes(header_len, payload_len, max_message_bytes, max_header_bytes):
    if header_len > max_header_bytes:
        raise CodecError(
            "oversized",
            f"Frame header of {header_len} bytes exceeds max_header_bytes={max_header_bytes}. "
            "Raise max_header_bytes on the server if a model has that many tensors.",
        )
    size = FRAME_OVERHEAD + header_len + payload_len
    if max_message_bytes is not None and size > max_message_bytes:
        raise CodecError(
            "oversized",
            f"Frame of {size} bytes exceeds max_message_bytes={max_message_bytes}. Raise "
            "max_message_bytes on the server to the weights' size plus headroom.",
        )


def _parse_body(kind, raw_header):
    """The authenticated JSON header as a dict with exactly the kind's keys."""
    try:
        body = json.loads(raw_header.decode("utf-8"))
    except (ValueError, RecursionError):
        body = None
    expected = _BODY_KEYS[kind]
    if not (isinstance(body, dict) and body.keys() == expected):
        raise CodecError(
            "malformed",
            f"The frame header is not a JSON object with keys {sorted(expected)}. "
            f"Received: {bytes(raw_header[:80])!r}.",
        )
    if kind == REQUEST:
        valid = _valid_op(body["op"]) and isinstance(body["h"], dict)
    elif kind == REPLY:
        valid = isinstance(body["h"], dict)
    else:
        valid = isinstance(body["error"], str) and isinstance(body["type"], str)
    if not valid:
        raise CodecError(
            "malformed", f"The frame header has values of the wrong type. Received: {body!r:.200}."
        )
    return body


def _layout(descriptors, payload_len):
    """(offset, dtype, shape, count) per tensor; the sizes must add up exactly."""
    if not isinstance(descriptors, list):
        raise CodecError("malformed", "Tensor descriptors must be a list.")
    layout, offset = [], 0
    for index, item in enumerate(descriptors):
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and item[0] in _DTYPES
            and isinstance(item[1], list)
            and len(item[1]) <= _MAX_NDIM
            and all(type(size) is int and size >= 0 for size in item[1])
        ):
            raise CodecError(
                "malformed",
                f"Tensor descriptor {index} is not [dtype, shape] with an allowed dtype. "
                f"Received: {item!r:.200}.",
            )
        dtype, shape = np.dtype(item[0]), tuple(item[1])
        count = math.prod(shape)
        layout.append((offset, dtype, shape, count))
        offset += count * dtype.itemsize + (-(count * dtype.itemsize) % ALIGNMENT)
        if offset > payload_len:
            break
    if offset != payload_len:
        raise CodecError(
            "malformed",
            f"The tensor descriptors need {offset} payload bytes (or more) but the frame "
            f"declares {payload_len}.",
        )
    return layout
