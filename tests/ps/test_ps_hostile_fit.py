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

import logging
import secrets
import socket
import time
import types

import keras
import numpy as np
import pytest
from helpers import dense_classifier
from hostile_crowd import ATTACK_BUDGET_S, EPOCHS, IO_TIMEOUT_S, HostileCrowd

pytestmark = pytest.mark.spark


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


def test_a_hostile_crowd_during_a_fit_is_refused_and_changes_nothing(spark, digits, fits, tmp_path,
                                                                    caplog):
    from sparkeras import TrainingConfig

    train_df, test_df = digits
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


def test_a_fit_over_tls_refuses_intruders_and_never_shows_its_secret(spark, digits, fits, tmp_path,
                                                                       caplog):
    from sparkeras import SparkModel, TrainingConfig
    from sparkeras.ps import TLSConfig

    train_df, test_df = digits
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
