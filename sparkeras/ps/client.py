"""The worker's side of the parameter server: one persistent connection.

Executor-side module (also used by tests and the benchmark on the driver).
"""

import socket
import ssl

from sparkeras.ps import auth, codec
from sparkeras.ps.channel import Channel, SocketReader, tune_socket, wait_readable

__all__ = ["ParameterClient", "RemoteError"]

# Longest wait for the TCP connection itself (a reachable server answers in ms).
_REACH_TIMEOUT_S = 10.0


class RemoteError(RuntimeError):
    """The server's handler raised while answering a request.

    `str(error)` is the handler's message; the connection stays usable.

    Attributes:
        remote_type: Class name of the handler's exception, e.g. "ValueError".

    Example:
    >>> try:
    ...     client.call("sync", {"round": 7, "worker": 0, "samples": 10}, weights)
    ... except RemoteError as error:
    ...     print(error.remote_type, error)
    """

    def __init__(self, message, remote_type="Exception"):
        super().__init__(message)
        self.remote_type = remote_type


class ParameterClient:
    """Calls a `ParameterServer` over one authenticated, persistent connection.

    Connects on the first call. If the server closed the connection while it
    was idle, the next call reconnects first. Use from one thread at a time.

    Args:
        host: The server's host, as in `ParameterServer.address`.
        port: The server's port.
        secret: The per-fit secret the server was given.
        tls: The server's `TLSConfig` (only `cafile` and `server_hostname`
            are read here), or None for plain TCP.
        timeout_s: Longest wait for a reply; a handler that waits on a
            barrier makes replies slow, so keep it generous.
        connect_timeout_s: Longest wait to connect and complete the hellos.

    Example:
    >>> with ParameterClient(host, port, secret) as client:
    ...     header, weights = client.call("sync", {"round": 0, "worker": 0, "samples": 64},
    ...                                   model.get_weights())
    """

    def __init__(self, host, port, secret, tls=None, timeout_s=3600.0, *, connect_timeout_s=30.0):
        self._host = host
        self._port = port
        self._secret = auth.check_secret(secret)
        self._tls = tls
        self._tls_context = tls.client_context() if tls is not None else None
        self._server_hostname = (tls.server_hostname if tls is not None else None) or host
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._channel = None

    def __repr__(self):
        state = "connected" if self._channel is not None else "not connected"
        return f"ParameterClient({self._host}:{self._port}, tls={self._tls is not None}, {state})"

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def call(self, op, header=None, tensors=()):
        """Sends one request and returns the server's reply.

        Args:
            op: Operation name, 1 to 64 printable ASCII characters.
            header: Dict of small JSON-able values (None for `{}`).
            tensors: List or tuple of numpy arrays; sent without copies when
                C-contiguous.

        Returns:
            `(header dict, list of numpy arrays)` of the reply.

        Raises:
            RemoteError: The handler raised; the connection stays usable.
            CodecError: The request cannot be encoded (nothing was sent), or
                the reply is invalid.
            ProtocolVersionError: The server speaks another wire version.
            ConnectionError: The server closed the connection or cannot be
                reached; the next call reconnects.
            TimeoutError: No reply within `timeout_s`.
        """
        channel = self._connected()
        buffers = channel.request(op, {} if header is None else header, tensors)
        try:
            reply = channel.exchange(buffers)
        except BaseException as error:
            self.close()
            self._raise_explained(error, f"the reply to {op!r}", self._timeout_s, "timeout_s")
        if reply.kind == codec.ERROR:
            raise RemoteError(reply.header["error"], reply.header["type"])
        return reply.header, reply.tensors

    def close(self):
        """Closes the connection; a later call opens a new one."""
        if self._channel is not None:
            self._channel.sock.close()
            self._channel = None

    def _connected(self):
        """The open channel; a new one if there is none or the server closed it."""
        if self._channel is not None and wait_readable(self._channel.sock, 0):
            # The server sends nothing unasked: readable means it closed the
            # connection (idle timeout, restart), so start a fresh one.
            self.close()
        if self._channel is None:
            self._channel = self._connect()
        return self._channel

    def _connect(self):
        try:
            # A host that drops packets would hold a task for minutes: a fit must fail fast.
            sock = socket.create_connection(
                (self._host, self._port), min(self._connect_timeout_s, _REACH_TIMEOUT_S)
            )
        except OSError as error:
            raise ConnectionError(
                f"Cannot reach the parameter server at {self._host}:{self._port}: {error}. It "
                "runs in the process that calls fit (the driver; on Spark Connect, the client), "
                "which the executors must reach: set TrainingConfig(server_host=...) to an "
                "address of it they reach (default: spark.driver.host; on Connect, the client's "
                "address on the route to the server), server_advertised_host if they reach it "
                "under another address, and open TrainingConfig.server_port in the firewall. "
                f"Received: server_host={self._host!r}, server_port={self._port}"
            ) from error
        try:
            tune_socket(sock)
            if self._tls_context is not None:
                sock = self._tls_context.wrap_socket(sock, server_hostname=self._server_hostname)
            reader = SocketReader(sock, self._connect_timeout_s)
            channel = Channel.open(sock, self._secret, reader, self._connect_timeout_s)
        except BaseException as error:
            sock.close()
            self._raise_explained(
                error, "the connection", self._connect_timeout_s, "connect_timeout_s"
            )
        channel.set_timeout(self._timeout_s)
        return channel

    def _raise_explained(self, error, waiting_for, timeout_s, setting):
        """Raises `error`, or an error that says what happened and the fix."""
        where = f"the parameter server at {self._host}:{self._port}"
        if isinstance(error, TimeoutError):
            raise TimeoutError(
                f"No answer from {where} for {waiting_for} within {setting}={timeout_s} s. Raise "
                f"{setting} if the server legitimately takes longer (waiting for slow workers)."
            ) from error
        if isinstance(error, ssl.SSLCertVerificationError):
            raise ConnectionError(
                f"TLS with {where} failed: {error}. Check that TLSConfig.cafile holds the CA (or "
                "the self-signed certificate) of the server's certificate, and that the "
                f"certificate names {self._server_hostname!r}."
            ) from error
        if isinstance(error, OSError) or getattr(error, "reason", None) == "truncated":
            raise ConnectionError(
                f"{where} closed the connection before {waiting_for} ({error}). It closes "
                "connections whose requests it refuses (a wrong secret, an oversized or malformed "
                "frame: see the driver's log), and all connections when it stops."
            ) from error
        raise error
