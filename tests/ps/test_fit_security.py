"""A fit's parameter server refuses strangers and the fit still completes."""

import logging
import socket

import keras
import pytest
from helpers import dense_classifier

pytestmark = pytest.mark.spark


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Intruder(keras.callbacks.Callback):
    """At the first epoch end, calls the live server with a wrong secret."""

    def __init__(self, port):
        super().__init__()
        self.port = port
        self.errors = []

    def on_epoch_end(self, epoch, logs=None):
        from sparkeras.ps import ParameterClient

        if epoch:
            return
        for op in ("register", "sync", "epoch_end"):
            client = ParameterClient("127.0.0.1", self.port, b"not the secret" * 3,
                                     timeout_s=5.0, connect_timeout_s=5.0)
            try:
                client.call(op, {"worker": 0, "round": 0, "samples": 1}, [])
            except Exception as error:  # the refusal, whatever its form
                self.errors.append(error)
            finally:
                client.close()


def test_request_without_the_secret_is_refused_and_training_completes(digits, caplog):
    from sparkeras import SparkModel, TrainingConfig

    train_df, test_df = digits
    port = _free_port()
    intruder = _Intruder(port)
    spark_model = SparkModel(dense_classifier(), num_workers=2,
                             config=TrainingConfig(server_port=port))
    with caplog.at_level(logging.WARNING):
        history = spark_model.fit(train_df, epochs=3, callbacks=[intruder], verbose=0)
    assert len(intruder.errors) == 3, intruder.errors
    assert len(history.history["loss"]) == 3
    assert spark_model.evaluate(test_df)["accuracy"] > 0.9
    assert any("refused" in record.getMessage() for record in caplog.records)
    assert "not the secret" not in caplog.text
