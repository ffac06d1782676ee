"""A real fit's parameter server under attack: a hostile crowd, intruders, leaks.

While `SparkModel.fit` trains on 2 workers, a thread sends over 1,000 hostile
requests to the live server on 127.0.0.1: without the secret (no tag, a wrong
secret, replays), broken frames (truncated, random bytes, pickles, oversized
length prefixes, wrong versions), idle and stalled connections held open, and,
as a buggy or compromised worker that knows the secret, requests with tensors
of the wrong shape or dtype, worker ids that do not exist, stale or future
rounds, epochs and launches. Every one must be refused, the pickles must never
run, and the fit must end as an undisturbed fit with the same seed does. The
server binds the driver's host only, on a port of the configured range.

A fit over TLS (a certificate made in the test) refuses a plain-TCP client
that knows the secret and a TLS client that does not, and the secret shows
neither in the logs (DEBUG, py4j included) nor in Spark's job, stage and SQL
descriptions.

Test-only hooks: the fit's `ParameterServer` is replaced by a subclass that
records itself (and starts the crowd), and `secrets.token_bytes` in
`sparkeras.training` is wrapped to learn the per-fit secret.
"""

import collections
import logging
import pickle
import secrets
import socket
import struct
import threading
import time
import types

import keras
import numpy as np
import pytest
from helpers import dense_classifier
from ps_helpers import Exploit, RawPeer, frame_bytes

pytestmark = pytest.mark.spark

EPOCHS = 4
ROUNDS = 32  # at least, of every kind of hostile request: 32 * 47 kinds > 1,000
ATTACK_BUDGET_S = 40.0
IO_TIMEOUT_S = 1.5


@pytest.fixture
def fits(monkeypatch):
    """Records the parameter server and the secret of each fit; runs `on_start`."""
    import sparkeras.ps
    from sparkeras import training

    record = types.SimpleNamespace(servers=[], secrets=[], on_start=None)

    def token_bytes(size):
        value = secrets.token_bytes(size)
        record.secrets.append(value)
        return value

    class RecordedServer(sparkeras.ps.ParameterServer):
        def __init__(self, *args, **kwargs):
            # Connections that have not authenticated wait min(idle_timeout_s,
            # io_timeout_s), 60 s by default: shortened so that the idle
            # attackers are refused within the test.
            super().__init__(*args, **{**kwargs, "io_timeout_s": IO_TIMEOUT_S})

        def start(self):
            super().start()
            self.listening = self._listener.getsockname()
            record.servers.append(self)
            if record.on_start is not None:
                record.on_start(self, record.secrets[-1])
            return self

    monkeypatch.setattr(training, "secrets", types.SimpleNamespace(token_bytes=token_bytes))
    monkeypatch.setattr(sparkeras.ps, "ParameterServer", RecordedServer)
    return record


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


class _HoldTheLastEpoch(keras.callbacks.Callback):
    """Keeps the fit running, at its last epoch end, until the crowd is done.

    The workers wait for the driver's decision meanwhile: the server is live.
    """

    def __init__(self, crowd):
        super().__init__()
        self.crowd = crowd
        self.epoch_ends = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(time.monotonic())
        if epoch == EPOCHS - 1 and self.crowd is not None:
            self.crowd.finish.set()
            self.crowd.join(ATTACK_BUDGET_S + 30)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _fit(spark, train_df, test_df, config, crowd=None):
    from sparkeras import SparkModel

    spark_model = SparkModel(
        dense_classifier(seed=0), num_workers=2, frequency="batch", config=config
    )
    hold = _HoldTheLastEpoch(crowd)
    history = spark_model.fit(train_df, epochs=EPOCHS, callbacks=[hold], verbose=0)
    assert len(history.history["loss"]) == EPOCHS
    assert sorted(spark_model.workers) == [0, 1]
    assert [row["launch"] for row in spark_model.training_summary] == [0, 0]  # no relaunch
    return spark_model, spark_model.evaluate(test_df)["accuracy"], hold


def test_a_hostile_crowd_during_a_fit_is_refused_and_changes_nothing(spark, fits, tmp_path, caplog):
    from sparkeras import TrainingConfig
    from sparkeras.demo import digits_frames

    train_df, test_df = digits_frames(spark)
    driver_host = spark.conf.get("spark.driver.host")

    # An undisturbed fit on one given port.
    port = _free_port()
    calm, calm_accuracy, _ = _fit(spark, train_df, test_df, TrainingConfig(server_port=port))
    (calm_server,) = fits.servers
    assert calm_server.address == (driver_host, port) == ("127.0.0.1", port)
    assert calm_server.listening[0] == "127.0.0.1"  # not all interfaces (0.0.0.0)
    assert sum(calm_server.refusals.values()) == 0
    assert sum(calm_server.handler_errors.values()) == 0

    # The same fit, hammered, on the free port of a range whose first port is taken.
    marker = tmp_path / "pwned"
    crowd = HostileCrowd(calm.model.get_weights(), str(marker))
    fits.on_start = crowd.launch
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        low = taken.getsockname()[1]
        config = TrainingConfig(server_port=(low, low + 20))
        with caplog.at_level(logging.WARNING, "sparkeras.ps"):
            hammered, accuracy, hold = _fit(spark, train_df, test_df, config, crowd)
    crowd.join(5)
    server = fits.servers[-1]
    print(
        f"\n{crowd.sent} hostile requests in {crowd.elapsed_s:.1f} s; refusals "
        f"{dict(server.refusals)}; errors {dict(crowd.remote_errors)}; "
        f"accuracy {calm_accuracy:.4f} undisturbed, {accuracy:.4f} hammered"
    )

    assert crowd.error is None, repr(crowd.error)
    first_end, last_end = hold.epoch_ends[0], hold.epoch_ends[-1]
    during = sum(first_end < t < last_end for t in crowd.round_times)
    print(
        f"{during} of {len(crowd.round_times)} rounds of the crowd between the first and the "
        "last epoch end"
    )
    assert during > 0  # the crowd overlapped the training rounds
    assert crowd.sent >= 1000
    assert crowd.elapsed_s < ATTACK_BUDGET_S + 15
    assert crowd.accepted == []
    assert dict(server.refusals) == dict(crowd.expected)  # each closed for its reason
    assert server.handler_errors == {"ValueError": sum(crowd.remote_errors.values())}
    assert sum(server.refusals.values()) + sum(crowd.remote_errors.values()) == crowd.sent
    assert not marker.exists()  # no pickle was ever loaded
    for reason in (
        "shape (32, 64)",
        "dtype float64",
        "Received: worker=2",
        "Received: round=-1",
        "launch 1 of the training job",
        "exchanges weights with 'sync'",
    ):
        assert any(reason in message for message in crowd.messages), reason

    # Refusals are logged, but rate-limited: a handful of lines, not one per request.
    lines = [
        r
        for r in caplog.records
        if r.name.startswith("sparkeras.ps") and r.levelno >= logging.WARNING
    ]
    print(f"{len(lines)} WARNING lines from sparkeras.ps")
    assert 0 < len(lines) <= 60, len(lines)

    # Bound to the driver's host, on the range's first free port.
    assert server.address[0] == driver_host and server.listening[0] == "127.0.0.1"
    assert low < server.address[1] <= low + 20

    # Training did not notice: same accuracy, same weights as the undisturbed fit.
    assert abs(accuracy - calm_accuracy) <= 0.01
    assert accuracy > 0.9
    for calm_weight, weight in zip(
        calm.model.get_weights(), hammered.model.get_weights(), strict=True
    ):
        np.testing.assert_allclose(weight, calm_weight, rtol=1e-4, atol=1e-5)
    assert len(fits.secrets) == 2 and fits.secrets[0] != fits.secrets[1]


class _TLSIntruders(keras.callbacks.Callback):
    """At the first epoch end: plain TCP with the secret, then TLS without it."""

    def __init__(self, fits, tls):
        super().__init__()
        self.fits = fits
        self.tls = tls
        self.errors = []

    def on_epoch_end(self, epoch, logs=None):
        from sparkeras.ps import ParameterClient

        if epoch:
            return
        port = self.fits.servers[-1].address[1]
        for secret, tls in ((self.fits.secrets[-1], None), (secrets.token_bytes(32), self.tls)):
            client = ParameterClient(
                "127.0.0.1", port, secret, tls=tls, timeout_s=5, connect_timeout_s=5
            )
            try:
                client.call("register", {"worker": 0, "batches": 1}, [])
            except ConnectionError as error:
                self.errors.append(error)
            finally:
                client.close()


def _secret_forms(secret):
    """The ways a secret could show in text: hex, repr, and base64 at any alignment."""
    import base64

    forms = {secret.hex(), secret.hex().upper(), repr(secret), str(list(secret))[1:-1]}
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.add(encode(bytes(shift) + secret).decode()[4:36])  # 32 characters of the secret
    return forms


def _spark_texts(spark):
    """Job and stage names and descriptions, and SQL descriptions, from Spark's status stores."""

    def option(value):
        return [value.get()] if value.isDefined() else []

    def items(sequence):  # a java.util.List or a scala Seq: both have iterator()
        iterator = sequence.iterator()
        while iterator.hasNext():
            yield iterator.next()

    store = spark.sparkContext._jsc.sc().statusStore()
    texts = []
    for job in items(store.jobsList(None)):
        texts += [job.name(), *option(job.description()), *option(job.jobGroup())]
        for stage_id in items(job.stageIds()):
            stage = store.lastStageAttempt(stage_id)
            texts += [stage.name(), stage.details(), *option(stage.description())]
    for execution in items(spark._jsparkSession.sharedState().statusStore().executionsList()):
        texts += [execution.description(), execution.details(), execution.physicalPlanDescription()]
    return texts


def test_a_fit_over_tls_refuses_intruders_and_never_shows_its_secret(spark, fits, tmp_path, caplog):
    from sparkeras import SparkModel, TrainingConfig
    from sparkeras.demo import digits_frames
    from sparkeras.ps import TLSConfig

    train_df, test_df = digits_frames(spark)
    tls = TLSConfig.self_signed(str(tmp_path), hostname="127.0.0.1")
    intruders = _TLSIntruders(fits, tls)
    spark_model = SparkModel(dense_classifier(), num_workers=2, config=TrainingConfig(tls=tls))
    caplog.set_level(logging.DEBUG)
    history = spark_model.fit(train_df, epochs=3, callbacks=[intruders], verbose=0)
    caplog.set_level(logging.WARNING)

    (server,) = fits.servers
    (secret,) = fits.secrets
    assert "tls=True" in repr(server)
    assert len(history.history["loss"]) == 3
    assert spark_model.evaluate(test_df)["accuracy"] > 0.9
    assert [type(error) for error in intruders.errors] == [ConnectionError, ConnectionError]
    assert dict(server.refusals) == {"tls_handshake": 1, "bad_auth": 1}

    texts = _spark_texts(spark)
    assert any("sparkeras fit: 3 epochs on 2 workers" in text for text in texts)
    logged = [caplog.text, *(str(record.args) for record in caplog.records)]
    # DEBUG includes py4j's commands, which carry the pickled task function.
    assert any(record.name.startswith("py4j") for record in caplog.records)
    assert any("Parameter server refused tls_handshake" in text for text in logged)
    for form in _secret_forms(secret):
        for text in texts + logged:
            assert form not in text
