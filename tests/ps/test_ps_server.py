"""ParameterServer and ParameterClient over real TCP on 127.0.0.1 (and TLS)."""

import logging
import secrets
import socket
import threading
import time

import numpy as np
import pytest
from ps_helpers import RawPeer, wait_for

from sparkeras.ps import (
    CodecError,
    ParameterClient,
    ParameterServer,
    ProtocolVersionError,
    RemoteError,
    TLSConfig,
    auth,
    codec,
)

SECRET = secrets.token_bytes(32)


def echo(op, header, tensors):
    if op == "fail":
        raise ValueError(f"round {header['round']} is not open")
    if op == "bad_reply":
        return {"x": 1}
    if op == "bad_tensors":
        return {}, None
    return {"op": op, **header}, tensors


@pytest.fixture
def server():
    with ParameterServer(echo, host="127.0.0.1", secret=SECRET, idle_timeout_s=0.3) as running:
        yield running


@pytest.fixture(scope="module")
def tls_config(tmp_path_factory):
    return TLSConfig.self_signed(str(tmp_path_factory.mktemp("tls")), hostname="127.0.0.1")


def test_call_round_trips_all_dtypes_and_shapes(server):
    tensors = [
        np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32),
        np.float64(3.5),
        np.zeros((0, 7), np.int16),
        np.arange(12, dtype=np.int64).reshape(3, 4),
        np.array([True, False]),
        np.arange(5, dtype=np.uint8),
        np.ones(3, np.float16),
        np.arange(6.0).reshape(2, 3).T,  # not contiguous
    ]
    with ParameterClient(*server.address, SECRET) as client:
        header, received = client.call("sync", {"round": 3, "worker": 0, "samples": 640}, tensors)
    assert header == {"op": "sync", "round": 3, "worker": 0, "samples": 640}
    for want, got in zip(tensors, received, strict=True):
        want = np.asarray(want)
        assert (got.dtype, got.shape) == (want.dtype, want.shape)
        assert np.array_equal(got, want)


def test_large_tensors_round_trip_bit_exactly(server):
    weights = [np.random.default_rng(1).random(5_000_000, dtype=np.float32), np.arange(1000.0)]
    with ParameterClient(*server.address, SECRET) as client:
        _, received = client.call("sync", {}, weights)
    assert [w.tobytes() == r.tobytes() for w, r in zip(weights, received, strict=True)] == [1, 1]


def test_handler_errors_become_remote_errors_and_the_connection_stays(server, caplog):
    with ParameterClient(*server.address, SECRET) as client:
        client.call("sync", {}, [])
        sock = client._channel.sock
        with caplog.at_level(logging.WARNING, "sparkeras.ps"), pytest.raises(RemoteError) as caught:
            client.call("fail", {"round": 7})
        assert str(caught.value) == "round 7 is not open"
        assert caught.value.remote_type == "ValueError"
        with pytest.raises(RemoteError, match="must return a \\(header dict"):
            client.call("bad_reply")
        with pytest.raises(RemoteError, match="list or tuple of numpy arrays"):
            client.call("bad_tensors")
        assert client.call("sync", {"after": True})[0]["after"] is True
        assert client._channel.sock is sock
    assert "round 7 is not open" in caplog.text
    assert sum(server.refusals.values()) == 0


def test_idle_connection_is_closed_and_the_client_reconnects(server):
    with ParameterClient(*server.address, SECRET) as client:
        client.call("sync", {}, [np.ones(2)])
        assert wait_for(lambda: server.refusals["idle_timeout"] == 1, timeout_s=3)
        header, (ones,) = client.call("sync", {"again": 1}, [np.ones(2)])
    assert header["again"] == 1 and ones.tolist() == [1.0, 1.0]


def test_stop_is_idempotent_and_closes_connections():
    server = ParameterServer(echo, secret=SECRET).start()
    client = ParameterClient(*server.address, SECRET, timeout_s=5)
    client.call("sync")
    server.stop()
    server.stop()
    with pytest.raises(ConnectionError, match="closed the connection|Cannot reach"):
        client.call("sync")
    with pytest.raises(RuntimeError, match="create a new ParameterServer"):
        server.start()


def test_blocking_handlers_do_not_block_other_connections():
    release = threading.Event()

    def handler(op, header, tensors):
        if op == "wait":
            release.wait(5)
        return {"op": op}, []

    with ParameterServer(handler, secret=SECRET) as server:
        waiter = ParameterClient(*server.address, SECRET)
        thread = threading.Thread(target=waiter.call, args=("wait",))
        thread.start()
        with ParameterClient(*server.address, SECRET) as other:
            assert other.call("quick")[0] == {"op": "quick"}
        assert thread.is_alive()
        release.set()
        thread.join(5)
        waiter.close()


def test_binds_only_the_host_it_is_given(server):
    _, port = server.address
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()


def test_port_range_skips_busy_ports():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = blocker.getsockname()[1]
    try:
        with ParameterServer(echo, secret=SECRET, port=(busy, busy + 20)) as server:
            assert busy < server.address[1] <= busy + 20
        with pytest.raises(OSError, match=f"No free port .* among {busy}..{busy}"):
            ParameterServer(echo, secret=SECRET, port=(busy, busy)).start()
    finally:
        blocker.close()


def test_invalid_arguments_are_refused_without_echoing_the_secret():
    with pytest.raises(ValueError, match="at least 16 bytes.*4 bytes") as caught:
        ParameterServer(echo, secret=b"abcd")
    assert "abcd" not in str(caught.value)
    with pytest.raises(ValueError, match="secret"):
        ParameterClient("127.0.0.1", 1, "a text secret of some length")
    with pytest.raises(ValueError, match="port must be"):
        ParameterServer(echo, secret=SECRET, port=(10, 5))
    with pytest.raises(ValueError, match="host must be"):
        ParameterServer(echo, secret=SECRET, host="")
    with pytest.raises(ValueError, match="max_connections must be a positive"):
        ParameterServer(echo, secret=SECRET, max_connections=0)


def test_secret_never_shows_in_reprs_errors_or_logs(server, caplog):
    caplog.set_level(logging.DEBUG, "sparkeras.ps")
    wrong = ParameterClient(*server.address, secrets.token_bytes(32), timeout_s=5)
    with pytest.raises(ConnectionError) as caught:
        wrong.call("sync")
    texts = [repr(server), repr(wrong), str(caught.value), caplog.text]
    assert wait_for(lambda: server.refusals["bad_auth"] == 1)
    for text in texts + [caplog.text]:
        assert SECRET.hex() not in text and repr(SECRET) not in text
    assert "see the driver's log" in str(caught.value)


def test_client_reports_both_versions_against_a_newer_server():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def newer_server():
        conn, _ = listener.accept()
        with conn:
            conn.recv(codec.HELLO_BYTES)
            conn.sendall(codec.MAGIC + bytes([codec.VERSION + 1]) + b"a future layout")

    thread = threading.Thread(target=newer_server)
    thread.start()
    try:
        client = ParameterClient(*listener.getsockname(), SECRET, connect_timeout_s=5)
        with pytest.raises(ProtocolVersionError) as caught:
            client.call("sync")
        assert f"version {codec.VERSION + 1}" in str(caught.value)
        assert f"this side speaks version {codec.VERSION}" in str(caught.value)
        assert str(caught.value).startswith("The parameter server speaks")
    finally:
        thread.join(5)
        listener.close()


def test_server_answers_an_older_client_with_its_version(server):
    with RawPeer(server.address) as peer:
        hello = bytearray(codec.encode_hello(codec.CLIENT_HELLO, auth.new_nonce()))
        hello[4] = codec.VERSION + 1
        peer.send(bytes(hello))
        reply = peer.receive_exactly(5)
        assert reply == codec.MAGIC + bytes([codec.VERSION])
        assert peer.wait_closed()
    assert wait_for(lambda: server.refusals["bad_version"] == 1)


def test_encoding_errors_leave_the_connection_usable(server):
    with ParameterClient(*server.address, SECRET) as client:
        client.call("sync")
        with pytest.raises(CodecError, match="dtype"):
            client.call("sync", {}, [np.array(["text"])])
        with pytest.raises(CodecError, match="list or tuple"):
            client.call("sync", {}, np.ones(3))
        assert client.call("sync", {"ok": 1})[0]["ok"] == 1


def test_client_timeout_says_which_setting_to_raise():
    def slow(op, header, tensors):
        time.sleep(0.4)
        return {}, []

    with ParameterServer(slow, secret=SECRET) as server:
        client = ParameterClient(*server.address, SECRET, timeout_s=0.2)
        with pytest.raises(TimeoutError, match="timeout_s=0.2"):
            client.call("sync")
        client.close()


def test_unreachable_server_names_the_fix():
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(ConnectionError, match="spark.driver.host"):
        ParameterClient("127.0.0.1", port, SECRET, connect_timeout_s=2).call("sync")


# TLS ---------------------------------------------------------------------------


def test_tls_round_trip_and_idle_reconnect(tls_config):
    weights = [np.arange(100_000, dtype=np.float32)]
    with ParameterServer(echo, secret=SECRET, tls=tls_config, idle_timeout_s=0.3) as server:
        with ParameterClient(*server.address, SECRET, tls=tls_config) as client:
            for _ in range(2):
                _, received = client.call("sync", {}, weights)
                assert received[0].tobytes() == weights[0].tobytes()
            assert wait_for(lambda: server.refusals["idle_timeout"] == 1, timeout_s=3)
            assert client.call("sync", {"again": 1})[0]["again"] == 1
        assert set(server.refusals) == {"idle_timeout"}


def test_tls_server_refuses_a_plain_client(tls_config):
    with ParameterServer(echo, secret=SECRET, tls=tls_config) as server:
        plain = ParameterClient(*server.address, SECRET, connect_timeout_s=5)
        with pytest.raises(ConnectionError):
            plain.call("sync")
        assert wait_for(lambda: server.refusals["tls_handshake"] == 1)


def test_tls_client_refuses_an_untrusted_server(tls_config, tmp_path):
    other_ca = TLSConfig.self_signed(str(tmp_path), hostname="127.0.0.1")
    with ParameterServer(echo, secret=SECRET, tls=tls_config) as server:
        client = ParameterClient(*server.address, SECRET, tls=other_ca, connect_timeout_s=5)
        with pytest.raises(ConnectionError, match="TLS .* failed.*cafile"):
            client.call("sync")
    with ParameterServer(echo, secret=SECRET) as plain_server:
        client = ParameterClient(*plain_server.address, SECRET, tls=tls_config, connect_timeout_s=5)
        with pytest.raises(ConnectionError):
            client.call("sync")
        assert wait_for(lambda: plain_server.refusals["bad_magic"] == 1)


def test_tls_config_errors_name_the_files(tmp_path):
    with pytest.raises(ValueError, match="certfile='/nope.pem'"):
        TLSConfig("/nope.pem", "/nope.key").server_context()
    with pytest.raises(ValueError, match="cafile='/nope-ca.pem'"):
        TLSConfig("/nope.pem", "/nope.key", cafile="/nope-ca.pem").client_context()


def test_oversized_request_is_refused_and_the_client_can_go_on():
    with ParameterServer(echo, secret=SECRET, max_message_bytes=1 << 20) as server:
        with ParameterClient(*server.address, SECRET, timeout_s=5) as client:
            with pytest.raises(ConnectionError, match="oversized or malformed"):
                client.call("sync", {}, [np.zeros(1 << 19, np.float32)])  # 2 MiB
            assert wait_for(lambda: server.refusals["oversized"] == 1)
            assert client.call("sync", {"small": 1}, [np.zeros(10)])[0]["small"] == 1
