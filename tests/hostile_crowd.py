"""A hostile crowd: every kind of request a parameter server must refuse.

Test helper of tests/ps/test_ps_hostile_fit.py. `HostileCrowd` is a thread that,
while a real fit trains, sends round-robin requests without the secret, broken
frames, idle and stalled connections, and, as a buggy worker that knows the
secret, requests with wrong tensors, ids and rounds; it tallies the refusal
each one is due, for the test to compare with the server's own counts.
"""

import collections
import pickle
import secrets
import socket
import struct
import threading
import time

import numpy as np
from ps_helpers import Exploit, RawPeer, frame_bytes

EPOCHS = 4  # of the fit the crowd attacks
ROUNDS = 32  # at least, of every kind of hostile request: 32 * 47 kinds > 1,000
ATTACK_BUDGET_S = 40.0
IO_TIMEOUT_S = 1.5


def _prefix(payload_len=0, header_len=2, version=None):
    from sparkeras.ps import codec

    version = codec.VERSION if version is None else version
    return struct.pack(
        "!4sBBHQIQ", codec.MAGIC, version, codec.REQUEST, 0, 0, header_len, payload_len
    )


class HostileCrowd(threading.Thread):
    """Sends every kind of hostile request, round-robin, and tallies the refusals due.

    It starts when the fit's server listens and goes on until `finish` is set
    (at the fit's last epoch end), for at least `ROUNDS` rounds.

    Attributes:
        expected: Refusals the server owes, by reason (connection closed).
        remote_errors: Authenticated requests answered with an error, by op.
        messages: The distinct error messages received (first 200 characters).
        accepted: Hostile requests the server did not refuse (must stay empty).
        sent: Hostile requests sent.
    """

    def __init__(self, weights, marker):
        super().__init__(name="hostile-crowd", daemon=True)
        self.weights = weights
        self.marker = marker
        self.expected = collections.Counter()
        self.remote_errors = collections.Counter()
        self.messages = set()
        self.accepted = []
        self.sent = 0
        self.error = None
        self.elapsed_s = None
        self.finish = threading.Event()
        self.round_times = []

    def launch(self, server, secret):
        """The fit's server is listening: start the attack (called by the fixture)."""
        self.address = ("127.0.0.1", server.address[1])
        self.max_message_bytes = server._limits["max_message_bytes"]
        self.secret = secret
        self.start()

    def run(self):
        from sparkeras.ps import ParameterClient

        started = time.monotonic()
        try:
            held = self._hold_idle()
            with ParameterClient(
                *self.address, self.secret, timeout_s=10, connect_timeout_s=10
            ) as client:
                index = 0
                while index < ROUNDS or not self.finish.is_set():
                    self.round_times.append(time.monotonic())
                    for attack in self._connection_attacks():
                        attack()
                    for op, header, tensors in self._authenticated(index):
                        self._call(client, op, header, tensors)
                    if index % ROUNDS == ROUNDS // 2:
                        held += self._hold_idle()
                    if time.monotonic() - started > ATTACK_BUDGET_S:
                        break
                    index += 1
                    self.finish.wait(0.02)  # leave the 2 cores time to train
            for reason, peer in held:
                self._refused(reason, peer, timeout_s=10 * IO_TIMEOUT_S)
        except BaseException as error:  # reported by the test
            self.error = error
        finally:
            self.elapsed_s = time.monotonic() - started

    # Without the secret, or not even the wire format: the connection is closed.

    def _refused(self, reason, peer, timeout_s=5.0):
        closed = peer.wait_closed(timeout_s=timeout_s)
        peer.sock.close()
        if not closed:
            self.accepted.append(f"connection kept open after {reason}")
        self.expected[reason] += 1
        self.sent += 1

    def _handshaken(self, secret=None):
        peer = RawPeer(self.address)
        return peer, peer.hello(self.secret if secret is None else secret)

    def _frame(self, key, header=None, tensors=()):
        from sparkeras.ps import codec

        header = {"worker": 99, "round": 0, "launch": 0, "samples": 1} if header is None else header
        return frame_bytes(codec.encode_request(0, key, "sync", header, list(tensors)))

    def _connection_attacks(self):
        from sparkeras.ps import auth, codec

        evil = pickle.dumps(Exploit(self.marker))

        def no_token():
            peer, key = self._handshaken()
            frame = bytearray(self._frame(key))
            frame[codec.FRAME_OVERHEAD - auth.TAG_BYTES : codec.FRAME_OVERHEAD] = bytes(32)
            peer.send(bytes(frame))
            self._refused("bad_auth", peer)

        def wrong_token():
            peer, key = self._handshaken(secrets.token_bytes(32))
            peer.send(self._frame(key, tensors=self.weights))
            self._refused("bad_auth", peer)

        def truncated():
            peer, key = self._handshaken()
            frame = self._frame(key, tensors=self.weights)
            peer.send(frame[: secrets.randbelow(len(frame) - 1) + 1])
            peer.sock.shutdown(socket.SHUT_WR)
            self._refused("truncated", peer)

        def random_bytes_as_hello():
            peer = RawPeer(self.address)
            peer.send(b"X" + secrets.token_bytes(63))
            self._refused("bad_magic", peer)

        def random_bytes_as_frame():
            peer, _ = self._handshaken()
            peer.send(b"X" + secrets.token_bytes(200))
            self._refused("bad_magic", peer)

        def pickle_as_hello():
            peer = RawPeer(self.address)
            peer.send(evil)
            self._refused("bad_magic", peer)

        def pickle_as_header():
            peer, _ = self._handshaken()
            peer.send(_prefix(header_len=len(evil)) + bytes(auth.TAG_BYTES) + evil)
            self._refused("bad_auth", peer)

        def pickle_as_payload_with_a_wrong_secret():
            peer, key = self._handshaken(secrets.token_bytes(32))
            peer.send(self._frame(key, tensors=[np.frombuffer(evil, np.uint8)]))
            self._refused("bad_auth", peer)

        def oversized_claim():
            peer, _ = self._handshaken()
            peer.send(_prefix(payload_len=100 * 10**9) + bytes(auth.TAG_BYTES))
            self._refused("oversized", peer)

        def one_byte_over_the_fits_limit():
            peer, _ = self._handshaken()
            payload_len = self.max_message_bytes - codec.FRAME_OVERHEAD - 2 + 1
            peer.send(_prefix(payload_len=payload_len) + bytes(auth.TAG_BYTES))
            self._refused("oversized", peer)

        def oversized_header():
            peer, _ = self._handshaken()
            peer.send(_prefix(header_len=2**32 - 1) + bytes(auth.TAG_BYTES))
            self._refused("oversized", peer)

        def wrong_version_hello():
            peer = RawPeer(self.address)
            peer.hello(self.secret, version=99)
            self._refused("bad_version", peer)

        def wrong_version_frame():
            peer, _ = self._handshaken()
            peer.send(_prefix(version=2) + bytes(auth.TAG_BYTES))
            self._refused("bad_version", peer)

        def replay_from_another_connection():
            peer, key = self._handshaken()
            captured = self._frame(key)
            peer.sock.close()
            other, _ = self._handshaken()
            other.send(captured)
            self._refused("bad_auth", other)

        return [
            no_token,
            wrong_token,
            truncated,
            random_bytes_as_hello,
            random_bytes_as_frame,
            pickle_as_hello,
            pickle_as_header,
            pickle_as_payload_with_a_wrong_secret,
            oversized_claim,
            one_byte_over_the_fits_limit,
            oversized_header,
            wrong_version_hello,
            wrong_version_frame,
            replay_from_another_connection,
        ]

    def _hold_idle(self):
        """Opens idle and stalled connections and leaves them to the server."""
        held = []
        for _ in range(3):
            held.append(("idle_timeout", RawPeer(self.address)))  # silent from the start
            peer, _ = self._handshaken()  # hello, then silence
            held.append(("idle_timeout", peer))
            peer, _ = self._handshaken()
            peer.send(_prefix(header_len=100)[:10])  # a frame that never completes
            held.append(("stalled", peer))
        return held

    # With the secret (a buggy or compromised worker): an error reply each.

    def _authenticated(self, index):
        weights = self.weights
        worker = index % 2
        exchange = {
            "worker": worker,
            "round": index % (22 * EPOCHS),  # about 22 rounds an epoch: some are open
            "launch": 0,
            "samples": 100,
            "sums": {"loss": 1.0, "accuracy": 50.0},
        }
        end = {"worker": worker, "launch": 0, "epoch": index % EPOCHS, "samples": 100}
        evil = np.frombuffer(pickle.dumps(Exploit(self.marker)), np.uint8)
        return [
            ("sync", exchange, [w.T.copy() for w in weights]),
            ("sync", exchange, [w.astype(np.float64) for w in weights]),
            ("sync", exchange, [w.astype(np.float16) for w in weights]),
            ("sync", exchange, weights[:-1]),
            ("sync", exchange, weights + [weights[-1]]),
            ("sync", exchange, [evil]),
            ("sync", exchange, []),
            ("sync", {**exchange, "worker": 2}, weights),
            ("sync", {**exchange, "worker": -1}, weights),
            ("sync", {**exchange, "worker": True}, weights),
            ("sync", {**exchange, "worker": "0"}, weights),
            ("sync", {**exchange, "round": -1}, weights),
            ("sync", {**exchange, "round": 10**6}, weights),
            ("sync", {**exchange, "round": 0.5}, weights),
            ("sync", {**exchange, "launch": 1}, weights),
            ("sync", {**exchange, "samples": -100}, weights),
            ("sync", {**exchange, "sums": {"loss": "NaN"}}, weights),
            ("sync", {"worker": worker}, weights),
            ("push", {**exchange, "base_version": 0}, weights),
            ("register", {"worker": 2, "batches": 10, "host": "evil", "pid": 1}, []),
            ("register", {"worker": -1, "batches": 10}, []),
            ("register", {"worker": worker, "batches": "all of them"}, []),
            ("register", {"worker": worker, "batches": -3}, []),
            ("epoch_end", {**end, "worker": 5}, []),
            ("epoch_end", {**end, "epoch": 10**6}, []),
            ("epoch_end", {**end, "epoch": -1}, []),
            ("epoch_end", {**end, "launch": 3}, []),
            ("epoch_end", {**end, "samples": "x"}, []),
            ("epoch_end", {**end, "validation_sums": ["x"]}, []),
            ("fail", {"worker": 9, "message": "stop the fit"}, []),
            ("fail", {"worker": worker, "message": ["not", "a", "str"]}, []),
            ("progress", {"worker": 7, "epoch": 0, "steps": 1, "samples": 1}, []),
            ("shutdown", {"worker": worker}, []),
        ]

    def _call(self, client, op, header, tensors):
        from sparkeras.ps import RemoteError

        try:
            client.call(op, header, tensors)
        except RemoteError as error:
            self.remote_errors[op] += 1
            self.messages.add(str(error)[:200])
        else:
            self.accepted.append((op, header))
        self.sent += 1
