"""The wire format alone: tensors round-trip bit-exactly, bad frames are refused.

Frames travel through a real socketpair and the library's `SocketReader`.
"""

import json
import pickle
import secrets
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from ps_helpers import frame_bytes, reader_over

from sparkeras.ps import auth, codec
from sparkeras.ps.channel import ConnectionClosed
from sparkeras.ps.codec import CodecError, ProtocolVersionError

KEY = secrets.token_bytes(32)
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = ["<f2", "<f4", "<f8", ">f4", "|i1", "<i2", "<i4", "<i8", ">i8", "|u1", "<u4", "|b1"]

tensors_strategy = st.lists(
    st.sampled_from(DTYPES).flatmap(
        lambda dtype: hnp.arrays(
            np.dtype(dtype), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
        )
    ),
    max_size=6,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=20)
    | st.floats(allow_nan=False),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
headers_strategy = st.dictionaries(st.text(max_size=10), json_values, max_size=5)


def read(data, seq=0, kinds=(codec.REQUEST,), key=KEY, **limits):
    with reader_over(data) as reader:
        return codec.read_frame(reader, key=key, seq=seq, kinds=kinds, **limits)


def request(tensors=(), header=None, seq=0, op="sync", key=KEY):
    return frame_bytes(codec.encode_request(seq, key, op, header or {}, tensors))


def assert_same_tensors(sent, received):
    assert len(sent) == len(received)
    for want, got in zip(sent, received, strict=True):
        want = np.asarray(want)
        assert got.dtype == want.dtype
        assert got.shape == want.shape
        assert got.tobytes() == want.tobytes()


@SETTINGS
@given(tensors=tensors_strategy, header=headers_strategy, seq=st.integers(0, 2**64 - 1))
def test_any_tensors_round_trip_bit_exactly(tensors, header, seq):
    message = read(request(tensors, header, seq), seq=seq)
    assert (message.kind, message.op, message.header) == (codec.REQUEST, "sync", header)
    assert_same_tensors(tensors, message.tensors)


@SETTINGS
@given(tensors=tensors_strategy, data=st.data())
def test_any_change_to_the_authenticated_part_is_refused(tensors, data):
    frame = bytearray(request(tensors, {"round": 1}))
    header_len = struct.unpack_from("!I", frame, 16)[0]
    protected = codec.FRAME_OVERHEAD + header_len
    how = data.draw(st.sampled_from(["flip", "insert", "delete"]))
    at = data.draw(st.integers(0, protected - 1))
    if how == "flip":
        frame[at] ^= data.draw(st.integers(1, 255))
    elif how == "insert":
        frame[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        del frame[at : at + data.draw(st.integers(1, 16))]
    with pytest.raises(CodecError):
        read(bytes(frame))


@SETTINGS
@given(tensors=tensors_strategy, data=st.data())
def test_any_truncated_frame_is_refused(tensors, data):
    frame = request(tensors, {"round": 1})
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises((CodecError, ConnectionClosed)) as caught:
        read(frame[:cut])
    if cut:
        assert caught.value.reason == "truncated"


@SETTINGS
@given(garbage=st.binary(min_size=1, max_size=200))
def test_random_bytes_are_refused(garbage):
    with pytest.raises(CodecError):
        read(garbage)


def test_payload_bytes_are_not_authenticated_but_keep_their_shape():
    """Documented trade-off: without TLS a flipped payload byte changes a value,
    never a dtype or shape (those are in the authenticated header)."""
    tensors = [np.zeros((4, 4), np.float32)]
    frame = bytearray(request(tensors))
    frame[-1] ^= 0xFF
    (received,) = read(bytes(frame)).tensors
    assert received.shape == (4, 4) and received.dtype == np.float32
    assert received.tobytes() != tensors[0].tobytes()


def test_wrong_key_is_bad_auth_and_old_sequence_is_replay():
    frame = request([np.ones(3)])
    with pytest.raises(CodecError) as caught:
        read(frame, key=secrets.token_bytes(32))
    assert caught.value.reason == "bad_auth"
    with pytest.raises(CodecError) as caught:
        read(frame, seq=1)
    assert caught.value.reason == "replay"


def test_size_limits_refuse_from_the_prefix_alone():
    """A prefix claiming 100 GB is refused with nothing after it read or allocated."""
    prefix = struct.pack("!4sBBHQIQ", codec.MAGIC, codec.VERSION, codec.REQUEST, 0, 0, 10, 10**11)
    with pytest.raises(CodecError) as caught:
        read(prefix + bytes(auth.TAG_BYTES), max_message_bytes=1 << 20)
    assert caught.value.reason == "oversized" and "max_message_bytes=1048576" in str(caught.value)
    huge_header = struct.pack(
        "!4sBBHQIQ", codec.MAGIC, codec.VERSION, codec.REQUEST, 0, 0, 2**32 - 1, 0
    )
    with pytest.raises(CodecError) as caught:
        read(huge_header + bytes(auth.TAG_BYTES))
    assert caught.value.reason == "oversized"


def test_a_well_tagged_frame_with_bad_descriptors_is_malformed():
    def forged(body, payload=b""):
        header = json.dumps(body).encode()
        prefix = struct.pack(
            "!4sBBHQIQ", codec.MAGIC, codec.VERSION, codec.REQUEST, 0, 0, len(header), len(payload)
        )
        return prefix + auth.tag(KEY, prefix, header) + header + payload

    bad_bodies = [
        {"op": "x", "h": {}, "t": [["|O", [1]]]},  # object dtype: what a pickle would need
        {"op": "x", "h": {}, "t": [["<f4", [-1]]]},
        {"op": "x", "h": {}, "t": [["<f4", [2**40]]]},
        {"op": "x", "h": {}, "t": [["<f4", [True]]]},
        {"op": "x", "h": {}, "t": "nope"},
        {"op": "x", "h": [], "t": []},
        {"op": "", "h": {}, "t": []},
        {"op": "x", "h": {}},
        {"op": "x", "h": {}, "t": [], "extra": 1},
    ]
    for body in bad_bodies:
        with pytest.raises(CodecError) as caught:
            read(forged(body))
        assert caught.value.reason == "malformed", body
    with pytest.raises(CodecError, match="need 64 payload bytes"):
        read(forged({"op": "x", "h": {}, "t": [["<f4", [2]]]}, payload=bytes(128)))


def test_a_pickle_is_just_bytes():
    """A pickle sent as a frame is refused; nothing on the wire is ever unpickled."""
    with pytest.raises(CodecError) as caught:
        read(pickle.dumps({"weights": list(range(100))}))
    assert caught.value.reason == "bad_magic"


def test_hello_version_mismatch_names_both_versions():
    hello = bytearray(codec.encode_hello(codec.SERVER_HELLO, auth.new_nonce()))
    hello[4] = 7
    with reader_over(bytes(hello)) as reader, pytest.raises(ProtocolVersionError) as caught:
        codec.read_hello(reader, codec.SERVER_HELLO)
    assert caught.value.peer_version == 7
    assert "version 7" in str(caught.value) and f"version {codec.VERSION}" in str(caught.value)


def test_hello_of_the_wrong_side_is_refused():
    hello = codec.encode_hello(codec.SERVER_HELLO, auth.new_nonce())
    with reader_over(hello) as reader, pytest.raises(CodecError, match="malformed|kind"):
        codec.read_hello(reader, codec.CLIENT_HELLO)


def test_sending_side_refuses_what_the_wire_cannot_carry():
    for bad in (np.array([object()]), np.array([1 + 2j]), np.array(["text"])):
        with pytest.raises(CodecError, match="Convert it") as caught:
            codec.encode_request(0, KEY, "x", {}, [bad])
        assert caught.value.reason == "unsupported"
    with pytest.raises(CodecError, match="operation name"):
        codec.encode_request(0, KEY, "bad op\n", {}, [])
    with pytest.raises(CodecError, match="must be a dict"):
        codec.encode_request(0, KEY, "x", [1], [])
    with pytest.raises(CodecError, match="JSON-able"):
        codec.encode_request(0, KEY, "x", {"a": np.ones(2)}, [])


def test_numpy_scalars_in_headers_and_non_contiguous_tensors_are_sent():
    strided = np.arange(20, dtype=np.int64).reshape(4, 5)[:, ::2]
    message = read(request([strided, np.float32(2.5)], {"samples": np.int64(64)}))
    assert message.header == {"samples": 64}
    assert_same_tensors([np.ascontiguousarray(strided), np.float32(2.5)], message.tensors)


def test_decoded_tensors_are_writable_aligned_views_of_one_buffer():
    message = read(request([np.ones(3, np.float32), np.ones((2, 2), np.float64)]))
    first, second = message.tensors
    second += 1  # handlers may update what they receive in place
    assert second.flags.writeable and second.flags.aligned
    assert np.shares_memory(first.base, second.base) or first.base is second.base
