"""How a fit sets up its parameter server: the address it binds, the size limit.

No Spark session here: the helpers are called with stand-ins for the session
and real Keras models; the fits themselves are in test_ps_hostile_fit.py and
test_ps_tls_fit.py.
"""

import keras
import pytest

from sparkeras.common.optimizer_state import optimizer_arrays
from sparkeras.ps import auth, codec
from sparkeras.spark_model import _server_hosts
from sparkeras.training import _max_message_bytes


class _Session:
    """Just what `_server_hosts` reads of a SparkSession: `conf.get`."""

    def __init__(self, **conf):
        self.conf = self
        self._conf = {f"spark.driver.{key}": value for key, value in conf.items()}

    def get(self, key, default=None):
        return self._conf.get(key, default)


@pytest.mark.parametrize(
    "conf, server_host, bind, advertised",
    [
        ({"host": "10.0.0.5"}, None, "10.0.0.5", "10.0.0.5"),
        ({"host": "driver.svc", "bindAddress": "172.17.0.2"}, None, "172.17.0.2", "driver.svc"),
        ({"host": "10.0.0.5", "bindAddress": "0.0.0.0"}, None, "0.0.0.0", "10.0.0.5"),
        ({"host": "10.0.0.5", "bindAddress": "172.17.0.2"}, "127.0.0.1", "127.0.0.1", "127.0.0.1"),
        ({"host": "10.0.0.5"}, "0.0.0.0", "0.0.0.0", "10.0.0.5"),
    ],
)
def test_server_binds_the_driver_address_and_advertises_the_driver_host(
    conf, server_host, bind, advertised
):
    hosts = _server_hosts(_Session(**conf), server_host)
    assert hosts == {"host": bind, "advertised_host": advertised}


def _frame_bytes(op, header, tensors):
    buffers = codec.encode_request(0, bytes(auth.TAG_BYTES), op, header, tensors)
    return sum(memoryview(buffer).nbytes for buffer in buffers)


def _model(optimizer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((1024,)),
            keras.layers.Dense(512),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(3),
        ]
    )
    model.compile(optimizer, "mse")
    return model


def _largest_request(model):
    """The bytes of a worker's largest request frames: sync and epoch_end."""
    header = {
        "epoch": 0,
        "worker": 0,
        "launch": 0,
        "samples": 10**6,
        "round": 10**6,
        "sums": {"loss": 1.0},
        "validation_samples": 10**6,
        "validation_sums": {"loss": 1.0},
    }
    sync = _frame_bytes("sync", header, model.get_weights())
    epoch_end = _frame_bytes("epoch_end", header, optimizer_arrays(model))
    return max(sync, epoch_end), epoch_end


def test_max_message_bytes_covers_an_optimizer_not_built_yet_and_stays_tight():
    options = {"amsgrad": True, "use_ema": True, "gradient_accumulation_steps": 2}
    model = _model(keras.optimizers.Adam(**options))
    limit = _max_message_bytes(model)
    assert optimizer_arrays(model) == []  # still not built on the driver
    worker = _model(keras.optimizers.Adam(**options))
    worker.optimizer.build(worker.trainable_variables)  # as after a worker's first step
    largest, epoch_end = _largest_request(worker)
    assert epoch_end == largest > 5 * sum(w.numpy().nbytes for w in worker.trainable_weights)
    slack = codec.DEFAULT_MAX_HEADER_BYTES + 64 * (len(optimizer_arrays(worker)) + 8)
    assert largest <= limit < largest + slack


def test_max_message_bytes_of_a_built_optimizer_is_its_exact_frame_bound():
    model = _model(keras.optimizers.SGD())
    model.optimizer.build(model.trainable_variables)
    state = optimizer_arrays(model)
    weights = model.get_weights()
    assert sum(a.nbytes for a in state) < sum(w.nbytes for w in weights)  # weights are largest
    expected = (
        codec.FRAME_OVERHEAD
        + codec.DEFAULT_MAX_HEADER_BYTES
        + sum(w.nbytes for w in weights)
        + 64 * len(weights)
    )
    assert _max_message_bytes(model) == expected
    largest, _ = _largest_request(model)
    assert largest <= expected
