"""Hostile peers against a real ParameterServer while a legitimate client works.

Every hostile request must be refused (counted in `server.refusals`), never
reach the handler, never allocate what it claims, never run code, and never
disturb the legitimate client.
"""

import collections
import concurrent.futures
import os
import pickle
import resource
import secrets
import socket
import struct
import threading
import time

import numpy as np
import pytest
from ps_helpers import Exploit, RawPeer, frame_bytes, wait_for

from sparkeras.ps import ParameterClient, ParameterServer, auth, codec

SECRET = secrets.token_bytes(32)
MAX_CONNECTIONS = 16
TIMEOUT_S = 0.5


@pytest.fixture
def calls():
    return []


@pytest.fixture
def server(calls):
    def handler(op, header, tensors):
        calls.append(header)
        return {"sum": float(sum(t.sum() for t in tensors))}, [t * 2 for t in tensors]

    with ParameterServer(
        handler,
        host="127.0.0.1",
        secret=SECRET,
        max_message_bytes=1 << 20,
        max_connections=MAX_CONNECTIONS,
        idle_timeout_s=TIMEOUT_S,
        io_timeout_s=TIMEOUT_S,
    ) as running:
        yield running


def _prefix(payload_len=0, header_len=2, version=codec.VERSION, kind=codec.REQUEST, seq=0):
    return struct.pack("!4sBBHQIQ", codec.MAGIC, version, kind, 0, seq, header_len, payload_len)


class Attacker:
    """Sends one kind of hostile request at a time; tallies the refusals due."""

    def __init__(self, address, marker):
        self.address = address
        self.marker = marker
        self.expected = collections.Counter()
        self.legit_requests = 0
        self.sent = 0

    def _refused(self, reason, peer):
        assert peer.wait_closed(), f"the server kept a {reason} connection open"
        self.expected[reason] += 1
        self.sent += 1

    def _handshaken(self, secret=SECRET):
        peer = RawPeer(self.address)
        return peer, peer.hello(secret)

    def wrong_secret(self):
        with ParameterClient(*self.address, secrets.token_bytes(32), timeout_s=5) as client:
            with pytest.raises(ConnectionError):
                client.call("sync", {"legit": False}, [np.ones(3)])
        self.expected["bad_auth"] += 1
        self.sent += 1

    def no_tag(self):
        peer, _ = self._handshaken()
        with peer:
            frame = bytearray(frame_bytes(codec.encode_request(0, b"k" * 32, "sync", {}, [])))
            frame[codec.FRAME_OVERHEAD - auth.TAG_BYTES : codec.FRAME_OVERHEAD] = bytes(32)
            peer.send(bytes(frame))
            self._refused("bad_auth", peer)

    def truncated(self):
        peer, key = self._handshaken()
        with peer:
            frame = frame_bytes(
                codec.encode_request(0, key, "sync", {"legit": False}, [np.ones(99)])
            )
            peer.send(frame[: secrets.randbelow(len(frame) - 1) + 1])
            peer.sock.shutdown(socket.SHUT_WR)
            self._refused("truncated", peer)

    def random_hello(self):
        with RawPeer(self.address) as peer:
            peer.send(b"X" + secrets.token_bytes(63))
            self._refused("bad_magic", peer)

    def random_frame(self):
        peer, _ = self._handshaken()
        with peer:
            peer.send(b"X" + secrets.token_bytes(200))
            self._refused("bad_magic", peer)

    def pickle_instead_of_hello(self):
        with RawPeer(self.address) as peer:
            peer.send(pickle.dumps([Exploit(self.marker)] * 10))
            self._refused("bad_magic", peer)

    def pickle_as_header(self):
        peer, _ = self._handshaken()
        with peer:
            evil = pickle.dumps(Exploit(self.marker))
            peer.send(_prefix(header_len=len(evil)) + bytes(auth.TAG_BYTES) + evil)
            self._refused("bad_auth", peer)

    def pickle_as_payload_with_a_wrong_secret(self):
        peer, key = self._handshaken(secrets.token_bytes(32))
        with peer:
            evil = pickle.dumps(Exploit(self.marker))
            header = b'{"op":"x","h":{},"t":[["|u1",[%d]]]}' % len(evil)
            prefix = _prefix(payload_len=len(evil) + (-len(evil) % 64), header_len=len(header))
            peer.send(prefix + auth.tag(key, prefix, header) + header + evil)
            self._refused("bad_auth", peer)

    def oversized_payload(self):
        peer, _ = self._handshaken()
        with peer:
            peer.send(_prefix(payload_len=100 * 10**9) + bytes(auth.TAG_BYTES))
            self._refused("oversized", peer)

    def oversized_header(self):
        peer, _ = self._handshaken()
        with peer:
            peer.send(_prefix(header_len=2**32 - 1) + bytes(auth.TAG_BYTES))
            self._refused("oversized", peer)

    def wrong_version_hello(self):
        with RawPeer(self.address) as peer:
            peer.hello(SECRET, version=99)
            self._refused("bad_version", peer)

    def wrong_version_frame(self):
        peer, _ = self._handshaken()
        with peer:
            peer.send(_prefix(version=99) + bytes(auth.TAG_BYTES))
            self._refused("bad_version", peer)

    def replay_on_the_same_connection(self):
        peer, key = self._handshaken()
        with peer:
            frame = frame_bytes(codec.encode_request(0, key, "sync", {"legit": True}, []))
            peer.send(frame)
            self.legit_requests += 1
            prefix = peer.receive_exactly(codec.FRAME_OVERHEAD)
            header_len = struct.unpack_from("!I", prefix, 16)[0]
            peer.receive_exactly(header_len)  # the reply, with no tensors
            peer.send(frame)
            self._refused("replay", peer)

    def replay_on_another_connection(self):
        peer, key = self._handshaken()
        with peer:
            captured = frame_bytes(codec.encode_request(0, key, "sync", {"legit": False}, []))
        other, _ = self._handshaken()
        with other:
            other.send(captured)
            self._refused("bad_auth", other)

    def wrong_hello_kind(self):
        with RawPeer(self.address) as peer:
            peer.send(codec.encode_hello(codec.SERVER_HELLO, auth.new_nonce()))
            self._refused("malformed", peer)

    def slow(self, what):
        """Idle and stalled peers: each takes TIMEOUT_S, so they run in batches."""
        with RawPeer(self.address) as peer:
            if what == "idle_after_hello":
                peer.hello(SECRET)
            elif what == "stalled_hello":
                peer.send(codec.MAGIC)
            elif what == "stalled_frame":
                peer.hello(SECRET)
                peer.send(_prefix(header_len=100)[:10])
            assert peer.wait_closed(timeout_s=10 * TIMEOUT_S), what
        return "stalled" if what.startswith("stalled") else "idle_timeout"


class LegitWorker(threading.Thread):
    """A worker that keeps calling the server, checking every reply."""

    def __init__(self, address):
        super().__init__(daemon=True)
        self.client = ParameterClient(*address, SECRET, timeout_s=10)
        self.stopping = threading.Event()
        self.calls = 0
        self.error = None

    def run(self):
        rng = np.random.default_rng(0)
        try:
            while not self.stopping.is_set():
                tensor = rng.normal(size=(8, 8)).astype(np.float32)
                header, (doubled,) = self.client.call("sync", {"legit": True}, [tensor])
                assert np.array_equal(doubled, tensor * 2)
                assert header["sum"] == pytest.approx(float(tensor.sum()), rel=1e-5)
                self.calls += 1
                time.sleep(0.01)
        except BaseException as error:  # reported by finish()
            self.error = error
        finally:
            self.client.close()

    def finish(self):
        self.stopping.set()
        self.join(10)
        if self.error is not None:
            raise self.error
        return self.calls


def test_hostile_requests_are_refused_while_a_legit_client_works(server, calls, tmp_path):
    marker = str(tmp_path / "pwned")
    attacker = Attacker(server.address, marker)
    fast = [
        attacker.wrong_secret,
        attacker.no_tag,
        attacker.truncated,
        attacker.random_hello,
        attacker.random_frame,
        attacker.pickle_instead_of_hello,
        attacker.pickle_as_header,
        attacker.pickle_as_payload_with_a_wrong_secret,
        attacker.oversized_payload,
        attacker.oversized_header,
        attacker.wrong_version_hello,
        attacker.wrong_version_frame,
        attacker.replay_on_the_same_connection,
        attacker.replay_on_another_connection,
        attacker.wrong_hello_kind,
    ]
    peak_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    legit = LegitWorker(server.address)
    legit.start()

    # 1. Fast hostile requests of every kind, one at a time.
    for index in range(70 * len(fast)):
        fast[index % len(fast)]()

    # 2. Idle and stalled peers, in concurrent batches below the connection cap.
    slow_kinds = ["idle_before_hello", "idle_after_hello", "stalled_hello", "stalled_frame"] * 3
    with concurrent.futures.ThreadPoolExecutor(len(slow_kinds)) as pool:
        for reason in pool.map(attacker.slow, slow_kinds):
            attacker.expected[reason] += 1
            attacker.sent += 1

    # 3. A flood of connections beyond the cap: the excess is closed at once.
    flood = [RawPeer(server.address) for _ in range(MAX_CONNECTIONS + 20)]
    for peer in flood:
        assert peer.wait_closed(timeout_s=10 * TIMEOUT_S)
        peer.sock.close()
    attacker.sent += len(flood)
    legit_requests = legit.finish()
    attacker.legit_requests += legit_requests
    assert legit_requests > 50

    refusals = server.refusals
    flood_counts = {"idle_timeout", "too_many_connections"}
    assert wait_for(
        lambda: (
            sum(refusals[r] for r in flood_counts)
            == sum(attacker.expected[r] for r in flood_counts) + len(flood)
        )
    )
    assert refusals["too_many_connections"] >= 20
    assert {r: n for r, n in refusals.items() if r not in flood_counts} == {
        r: n for r, n in attacker.expected.items() if r not in flood_counts
    }
    assert attacker.sent >= 1000
    assert sum(refusals.values()) == attacker.sent
    assert len(calls) == attacker.legit_requests
    assert all(header == {"legit": True} for header in calls)
    assert not os.path.exists(marker)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_rss_kib) / 1024
    assert grown_mib < 100, f"peak memory grew by {grown_mib:.0f} MiB"


def test_refusals_are_logged_once_per_reason_per_interval(server, caplog):
    with caplog.at_level("WARNING", "sparkeras.ps"):
        for _ in range(20):
            with RawPeer(server.address) as peer:
                peer.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(40))
                assert peer.wait_closed()
    assert wait_for(lambda: server.refusals["bad_magic"] == 20)
    lines = [r for r in caplog.records if "bad_magic" in r.getMessage()]
    assert len(lines) == 1
    assert "GET" in lines[0].getMessage()
