"""Helpers for the parameter-server tests: raw peers and real socket readers.

Everything here talks over real sockets (a socketpair or TCP on 127.0.0.1);
the raw peer builds frames with the library's own codec so that tests can
send what a legitimate client never would.
"""

import contextlib
import socket
import time

from sparkeras.ps import auth, codec
from sparkeras.ps.channel import SocketReader


class Exploit:
    """A pickle payload: unpickling it would create the file `marker`.

    Tests send it where a careless server would unpickle, then assert the
    marker never appears.
    """

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@contextlib.contextmanager
def reader_over(data, timeout_s=5.0):
    """A `SocketReader` over a real socketpair holding `data`, then end of stream."""
    left, right = socket.socketpair()
    try:
        right.sendall(data)
        right.shutdown(socket.SHUT_WR)
        yield SocketReader(left, timeout_s)
    finally:
        left.close()
        right.close()


def frame_bytes(buffers):
    """The bytes of an encoded frame, joined (tests only: frames are small)."""
    return b"".join(bytes(buffer) for buffer in buffers)


class RawPeer:
    """A hand-driven TCP peer of a `ParameterServer`, for hostile requests.

    Example:
    >>> with RawPeer(server.address) as peer:
    ...     key = peer.hello(secret)
    ...     peer.send(frame_bytes(codec.encode_request(0, key, "x", {}, [])))
    """

    def __init__(self, address, timeout_s=5.0):
        self.sock = socket.create_connection(address, timeout=timeout_s)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def hello(self, secret, version=codec.VERSION):
        """Does the client's half of the hellos; returns the session key."""
        nonce = auth.new_nonce()
        hello = bytearray(codec.encode_hello(codec.CLIENT_HELLO, nonce))
        hello[4] = version
        self.send(bytes(hello))
        reply = self.receive_exactly(codec.HELLO_BYTES)
        return auth.session_key(secret, nonce, reply[-auth.NONCE_BYTES :])

    def receive_exactly(self, size):
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError(f"closed after {len(data)} of {size} bytes")
            data += chunk
        return bytes(data)

    def wait_closed(self, timeout_s=5.0):
        """True once the server closed the connection (end of stream or reset)."""
        self.sock.settimeout(timeout_s)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        except TimeoutError:
            return False
        return True


def wait_for(predicate, timeout_s=5.0, interval_s=0.01):
    """Polls `predicate` until it is true or `timeout_s` passed; returns its value."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(interval_s)
    return value
