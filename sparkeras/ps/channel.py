"""An authenticated, framed connection over a socket, used by both sides.

Neutral module (driver and executors). The server and the client share the
hello exchange, the sequence numbering, the socket reads under time limits
and the sends without copies; only their time limits differ.
"""

import contextlib
import select
import socket
import ssl
import time

from sparkeras.ps import auth, codec

__all__ = ["Channel", "ConnectionClosed", "SocketReader", "tune_socket", "wait_readable"]

_COALESCE_BYTES = 256 * 1024


class ConnectionClosed(ConnectionError):
    """The peer closed the connection cleanly, between two messages."""


def tune_socket(sock):
    """Turns off Nagle's delay: frames go out as soon as they are written.

    Example:
    >>> tune_socket(socket.create_connection(("127.0.0.1", port)))
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def wait_readable(sock, timeout_s):
    """Whether `sock` has bytes (or an end of stream) to read within `timeout_s`.

    Example:
    >>> if not wait_readable(sock, 300.0): sock.close()
    """
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(max(0, int(timeout_s * 1000))))


class SocketReader:
    """Fills buffers from a socket under time limits; the `read_into` of codec.

    Args:
        sock: A connected socket (plain or TLS).
        timeout_s: Longest wait for the next bytes once a message started.
        header_deadline_s: If set, the unauthenticated part of each message
            (hello, or frame prefix and header) must arrive within this many
            seconds of its first byte, however it trickles in.

    Raises (when called):
        ConnectionClosed: The stream ended before the first byte of a message.
        CodecError: "truncated", the stream ended inside a message.
        TimeoutError: A limit passed.

    Example:
    >>> message = codec.read_frame(SocketReader(sock, 60.0), key=key, seq=0, kinds=(REPLY,))
    """

    def __init__(self, sock, timeout_s, header_deadline_s=None):
        self._sock = sock
        self.timeout_s = timeout_s
        self._header_deadline_s = header_deadline_s
        self._deadline = None

    def __call__(self, view, phase):
        if phase == codec.START and self._header_deadline_s is not None:
            self._deadline = time.monotonic() + self._header_deadline_s
        started = phase != codec.START
        while view.nbytes:
            self._sock.settimeout(self._next_timeout(phase))
            received = self._sock.recv_into(view)
            if received == 0:
                if not started:
                    raise ConnectionClosed("The peer closed the connection.")
                raise codec.CodecError(
                    "truncated",
                    f"The connection ended {view.nbytes} bytes before the end of the message.",
                )
            started = True
            view = view[received:]

    def _next_timeout(self, phase):
        if phase == codec.PAYLOAD or self._deadline is None:
            return self.timeout_s
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(
                f"The message header did not arrive within {self._header_deadline_s} s."
            )
        return left if self.timeout_s is None else min(left, self.timeout_s)


class Channel:
    """One authenticated connection: hellos done, frames numbered and tagged.

    Build it with `Channel.open` (client side) or `Channel.accept` (server
    side). The client sends request n and reads reply n; the server reads
    request n and sends reply n; any other number is refused as a replay.

    Args:
        sock: The connected socket.
        key: The session key both sides derived.
        reader: The `SocketReader` of `sock`.
        send_timeout_s: Longest wait while the peer does not take our bytes.
        **limits: `max_message_bytes` and `max_header_bytes` for frames read.

    Example:
    >>> channel = Channel.open(sock, secret, SocketReader(sock, 3600.0), 3600.0)
    >>> reply = channel.exchange(channel.request("sync", {"round": 0}, weights))
    """

    def __init__(self, sock, key, reader, send_timeout_s, **limits):
        self.sock = sock
        self._key = key
        self._reader = reader
        self._send_timeout_s = send_timeout_s
        self._limits = limits
        self._seq = 0

    @classmethod
    def open(cls, sock, secret, reader, send_timeout_s, **limits):
        """Client side: sends our hello, reads the server's, derives the key.

        Raises:
            ProtocolVersionError: The server speaks another wire version.
        """
        nonce = auth.new_nonce()
        _send(sock, [codec.encode_hello(codec.CLIENT_HELLO, nonce)], send_timeout_s)
        server_nonce = codec.read_hello(reader, codec.SERVER_HELLO)
        return cls(
            sock, auth.session_key(secret, nonce, server_nonce), reader, send_timeout_s, **limits
        )

    @classmethod
    def accept(cls, sock, secret, reader, send_timeout_s, **limits):
        """Server side: reads the client's hello, answers with ours.

        A client of another wire version still gets our hello, so that it
        can say which versions differ, before `ProtocolVersionError` is raised.
        """
        nonce = auth.new_nonce()
        hello = [codec.encode_hello(codec.SERVER_HELLO, nonce)]
        try:
            client_nonce = codec.read_hello(reader, codec.CLIENT_HELLO)
        except codec.ProtocolVersionError:
            with contextlib.suppress(OSError):
                _send(sock, hello, send_timeout_s)
            raise
        _send(sock, hello, send_timeout_s)
        return cls(
            sock, auth.session_key(secret, client_nonce, nonce), reader, send_timeout_s, **limits
        )

    def set_timeout(self, timeout_s):
        """Sets the longest wait for the peer's bytes, both ways."""
        self._reader.timeout_s = timeout_s
        self._send_timeout_s = timeout_s

    # Client side ------------------------------------------------------------

    def request(self, op, header, tensors):
        """Encodes the next request without sending it (raises CodecError)."""
        return codec.encode_request(self._seq, self._key, op, header, tensors)

    def exchange(self, buffers):
        """Sends an encoded request and returns the reply `Message`."""
        _send(self.sock, buffers, self._send_timeout_s)
        reply = self._read((codec.REPLY, codec.ERROR))
        self._seq += 1
        return reply

    # Server side ------------------------------------------------------------

    def next_request(self):
        """Reads, authenticates and decodes the next request `Message`."""
        return self._read((codec.REQUEST,))

    def reply(self, header, tensors):
        """Sends the reply to the last request (CodecError before any byte)."""
        self._send_reply(codec.encode_reply(self._seq, self._key, header, tensors))

    def reply_error(self, message, error_type):
        """Sends an error reply to the last request."""
        self._send_reply(codec.encode_error(self._seq, self._key, message, error_type))

    def _send_reply(self, buffers):
        _send(self.sock, buffers, self._send_timeout_s)
        self._seq += 1

    def _read(self, kinds):
        return codec.read_frame(
            self._reader, key=self._key, seq=self._seq, kinds=kinds, **self._limits
        )


def _send(sock, buffers, timeout_s):
    """Sends `buffers` in order: small ones gathered, large ones as they are."""
    sock.settimeout(timeout_s)
    pending = bytearray()
    for buffer in buffers:
        size = memoryview(buffer).nbytes
        if len(pending) + size <= _COALESCE_BYTES:
            pending += buffer
            continue
        if pending:
            sock.sendall(pending)
            pending.clear()
        if size <= _COALESCE_BYTES:
            pending += buffer
        else:
            sock.sendall(buffer)
    if pending:
        sock.sendall(pending)
