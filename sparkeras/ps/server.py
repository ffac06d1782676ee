"""The parameter server: a TCP server on the driver, one thread per connection.

Driver-side module. Each connection gets its own thread, which reads a
request, calls the handler (which may block for as long as a barrier takes)
and sends the reply; no lock is held around handlers. Whatever a peer sends
that the wire format refuses closes that connection only, is counted in
`ParameterServer.refusals` and is logged at most once per reason every 10 s;
it never reaches the handler and never stops the server.
"""

import collections
import errno
import logging
import socket
import ssl
import threading
import time

from sparkeras.ps import auth, codec
from sparkeras.ps.channel import Channel, ConnectionClosed, SocketReader, tune_socket, wait_readable

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "ParameterServer"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 1 << 30
_LOG_INTERVAL_S = 10.0
_STOP_JOIN_S = 2.0
# An idle worker whose connection times out is no attack: it reconnects.
_INFO_REASONS = frozenset({"idle_timeout"})


class ParameterServer:
    """Serves `handler(op, header, tensors) -> (header, tensors)` over TCP.

    Every connection must prove it knows `secret` (see docs/wire-format.md);
    requests are bounded in size and time. Replies to handler exceptions are
    error frames: the client raises `RemoteError` and the connection stays.

    Args:
        handler: Called from the connection's thread with the request's op
            (str), header (dict) and tensors (list of numpy arrays); returns
            a `(header dict, list of arrays)` reply. It may block.
        host: Address to bind, such as `spark.driver.host`. Only that one:
            "0.0.0.0" (all interfaces) only if you pass it.
        secret: The per-fit secret, bytes of at least 16 bytes.
        port: Port to bind; 0 for any free port, or an inclusive `(low, high)`
            range tried in order.
        tls: A `TLSConfig` to require TLS, or None.
        max_message_bytes: Largest request frame; refused from its length
            prefix, before anything is allocated. Use the weights' bytes
            plus 64 bytes per tensor plus the header (1 MiB is ample).
        max_connections: Open connections beyond this are closed at once.
        idle_timeout_s: A connection with no request for this long is closed.
        io_timeout_s: Once a request started, each wait for its next bytes
            (and, before a peer authenticated, its whole prefix and header)
            is limited to this; stalled peers are dropped.
        max_header_bytes: Largest JSON header of a request.

    Attributes:
        refusals: `collections.Counter` of refusal reasons: "bad_magic",
            "bad_version", "bad_auth", "replay", "oversized", "malformed",
            "truncated", "stalled", "idle_timeout", "too_many_connections",
            "tls_handshake".
        handler_errors: `collections.Counter` of the exception class names
            the handler raised (error replies sent); logged like refusals,
            once per class every 10 s with a count.

    Example:
    >>> secret = secrets.token_bytes(32)
    >>> with ParameterServer(lambda op, h, t: ({"ok": True}, t), secret=secret) as server:
    ...     host, port = server.address
    ...     with ParameterClient(host, port, secret) as client:
    ...         client.call("echo", {}, [np.ones(3)])
    """

    def __init__(
        self,
        handler,
        host="127.0.0.1",
        secret=None,
        port=0,
        tls=None,
        max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES,
        max_connections=64,
        idle_timeout_s=300.0,
        *,
        io_timeout_s=60.0,
        max_header_bytes=codec.DEFAULT_MAX_HEADER_BYTES,
    ):
        if not callable(handler):
            raise TypeError(
                "handler must be callable as handler(op, header, tensors). "
                f"Received: {type(handler).__name__}."
            )
        if not isinstance(host, str) or not host:
            raise ValueError(
                "host must be the address to bind, such as spark.driver.host or '127.0.0.1'. "
                f"Received: host={host!r}."
            )
        for name, value in (
            ("max_message_bytes", max_message_bytes),
            ("max_connections", max_connections),
            ("idle_timeout_s", idle_timeout_s),
            ("io_timeout_s", io_timeout_s),
            ("max_header_bytes", max_header_bytes),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number. Received: {name}={value!r}.")
        self._handler = handler
        self._host = host
        self._secret = auth.check_secret(secret)
        self._ports = _port_candidates(port)
        self._tls = tls
        self._tls_context = tls.server_context() if tls is not None else None
        self._limits = {
            "max_message_bytes": max_message_bytes,
            "max_header_bytes": max_header_bytes,
        }
        self._max_connections = max_connections
        self._idle_timeout_s = idle_timeout_s
        self._io_timeout_s = io_timeout_s
        self.refusals = collections.Counter()
        self._refusal_log = _RefusalLog(self.refusals)
        self.handler_errors = collections.Counter()
        self._error_log = _RefusalLog(
            self.handler_errors, "The parameter-server handler raised %s", "error(s)"
        )
        self._lock = threading.Lock()
        self._state = "new"
        self._connections = {}  # accepted socket -> (current socket, thread)
        self._listener = None
        self._address = None
        self._accept_thread = None

    def __repr__(self):
        where = f"{self._address[0]}:{self._address[1]}" if self._address else self._host
        return f"ParameterServer({where}, tls={self._tls is not None}, {self._state})"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def address(self):
        """`(host, port)` clients connect to; known once started."""
        if self._address is None:
            raise RuntimeError("The parameter server has no address before start().")
        return self._address

    def start(self):
        """Binds, listens and starts accepting connections; returns self.

        Raises:
            OSError: If no port of `port` can be bound on `host`.
            RuntimeError: If the server was already started.
        """
        with self._lock:
            if self._state != "new":
                raise RuntimeError(
                    f"This parameter server is {self._state}; create a new ParameterServer to "
                    "serve again."
                )
            self._listener = _bind(self._host, self._ports)
            self._address = (self._host, self._listener.getsockname()[1])
            self._state = "running"
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"sparkeras-ps-accept-{self._address[1]}", daemon=True
        )
        self._accept_thread.start()
        logger.info(
            "Parameter server listening on %s:%d (TLS %s).",
            *self._address,
            "on" if self._tls else "off",
        )
        return self

    def stop(self):
        """Stops accepting, closes every connection; safe to call twice.

        Handlers still running finish in their threads (daemons); their
        replies find the connection closed.
        """
        with self._lock:
            if self._state != "running":
                self._state = "stopped"
                return
            self._state = "stopped"
            connections = list(self._connections.values())
        _shut(self._listener)
        self._listener.close()
        for sock, _ in connections:
            _shut(sock)
        deadline = time.monotonic() + _STOP_JOIN_S
        for thread in [self._accept_thread] + [thread for _, thread in connections]:
            if thread is not threading.current_thread():  # stop() called by a handler
                thread.join(max(0.0, deadline - time.monotonic()))
        self._refusal_log.flush()
        self._error_log.flush()
        logger.info("Parameter server on %s:%d stopped.", *self._address)

    # Connections ------------------------------------------------------------

    def _accept_loop(self):
        while self._state == "running":
            try:
                sock, peer = self._listener.accept()
            except OSError as error:
                if self._state != "running":
                    return
                logger.warning("The parameter server could not accept a connection: %s", error)
                time.sleep(0.1)  # out of file descriptors, say: do not spin
                continue
            self._admit(sock, _peer_name(peer))

    def _admit(self, sock, peer):
        with self._lock:
            admitted = self._state == "running" and len(self._connections) < self._max_connections
            if admitted:
                thread = threading.Thread(
                    target=self._serve, args=(sock, peer), name=f"sparkeras-ps-{peer}", daemon=True
                )
                self._connections[sock] = (sock, thread)
        if admitted:
            thread.start()
            return
        if self._state == "running":
            self._refusal_log.record(
                "too_many_connections",
                peer,
                f"{self._max_connections} connections are open; raise max_connections if "
                "that many workers are expected",
            )
        sock.close()

    def _serve(self, sock, peer):
        try:
            self._converse(sock, peer)
        except ConnectionClosed:
            pass
        except codec.CodecError as error:
            self._refusal_log.record(error.reason, peer, str(error))
        except TimeoutError:
            self._refusal_log.record(
                "stalled", peer, f"a message stalled for io_timeout_s={self._io_timeout_s}"
            )
        except OSError as error:
            logger.debug("Parameter-server connection from %s ended: %s", peer, error)
        except Exception:
            logger.exception("Parameter-server connection from %s failed; closing it.", peer)
        finally:
            with self._lock:
                current, _ = self._connections.pop(sock)
            current.close()

    def _converse(self, sock, peer):
        """Handshakes, then answers requests until the peer leaves or is refused."""
        wait_s = min(self._idle_timeout_s, self._io_timeout_s)  # until it authenticates
        if not self._wait_for_request(sock, peer, wait_s):
            return
        tune_socket(sock)
        if self._tls_context is not None:
            sock = self._start_tls(sock, peer)
            if sock is None:
                return
        reader = SocketReader(sock, self._io_timeout_s, header_deadline_s=self._io_timeout_s)
        channel = Channel.accept(sock, self._secret, reader, self._io_timeout_s, **self._limits)
        while self._wait_for_request(sock, peer, wait_s):
            message = channel.next_request()
            wait_s = self._idle_timeout_s
            self._answer(channel, message, peer)

    def _wait_for_request(self, sock, peer, wait_s):
        if wait_readable(sock, wait_s):
            return True
        self._refusal_log.record("idle_timeout", peer, f"no request within {wait_s} s")
        return False

    def _start_tls(self, raw, peer):
        """The TLS socket over `raw`, or None (refused) if the handshake fails."""
        sock = self._tls_context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        with self._lock:
            thread = self._connections[raw][1]
            self._connections[raw] = (sock, thread)
        sock.settimeout(self._io_timeout_s)
        try:
            sock.do_handshake()
        except (ssl.SSLError, TimeoutError) as error:
            self._refusal_log.record("tls_handshake", peer, f"TLS handshake failed: {error}")
            return None
        return sock

    def _answer(self, channel, message, peer):
        """Runs the handler and sends its reply, or its exception as an error."""
        try:
            result = self._handler(message.op, message.header, message.tensors)
        except Exception as error:
            # A buggy or hostile peer with the secret can repeat a bad request
            # at will: log the first of each kind per interval, with its trace.
            self._error_log.record(
                type(error).__name__, peer, f"{message.op!r}: {error}", exc_info=True
            )
            channel.reply_error(str(error), type(error).__name__)
            return
        try:
            if not (isinstance(result, tuple) and len(result) == 2):
                raise codec.CodecError(
                    "unsupported",
                    "The handler must return a (header dict, list of arrays) tuple. "
                    f"Received: {type(result).__name__}.",
                )
            channel.reply(*result)
        except codec.CodecError as error:
            logger.warning("The reply to %r from %s cannot be sent: %s", message.op, peer, error)
            channel.reply_error(
                f"The server's reply to {message.op!r} is invalid: {error}", type(error).__name__
            )


class _RefusalLog:
    """Counts refusals; logs each reason at most once per interval, with a count.

    Args:
        counter: The `collections.Counter` to add each reason to.
        event: Log text before " from <peer>", with one %s for the reason.
        noun: What the count since the last report counts.
    """

    def __init__(self, counter, event="Parameter server refused %s", noun="refusal(s)"):
        self._counter = counter
        self._event = event
        self._noun = noun
        self._lock = threading.Lock()
        self._last_logged = {}
        self._unlogged = collections.Counter()

    def record(self, reason, peer, detail, exc_info=False):
        now = time.monotonic()
        with self._lock:
            self._counter[reason] += 1
            self._unlogged[reason] += 1
            last = self._last_logged.get(reason)
            if last is not None and now - last < _LOG_INTERVAL_S:
                return
            self._last_logged[reason] = now
            count = self._unlogged.pop(reason)
        logger.log(
            logging.INFO if reason in _INFO_REASONS else logging.WARNING,
            f"{self._event} from %s: %s (%d such {self._noun} since the last report).",
            reason,
            peer,
            detail,
            count,
            exc_info=exc_info,
        )

    def flush(self):
        """Logs the counts not reported yet (when the server stops)."""
        with self._lock:
            unlogged, self._unlogged = self._unlogged, collections.Counter()
        for reason, count in sorted(unlogged.items()):
            logger.log(
                logging.INFO if reason in _INFO_REASONS else logging.WARNING,
                f"{self._event} %d more time(s) since the last report.",
                reason,
                count,
            )


def _port_candidates(port):
    """The ports to try, in order, for `port` (an int or a `(low, high)` range)."""
    if isinstance(port, int) and not isinstance(port, bool) and 0 <= port <= 65535:
        return [port]
    if (
        isinstance(port, (tuple, list))
        and len(port) == 2
        and all(isinstance(p, int) and not isinstance(p, bool) for p in port)
        and 0 < port[0] <= port[1] <= 65535
    ):
        return list(range(port[0], port[1] + 1))
    raise ValueError(
        "port must be an int from 0 (any free port) to 65535, or an inclusive (low, high) range "
        f"of ports to try. Received: port={port!r}."
    )


def _bind(host, ports):
    """A listening socket on `host` and the first free port of `ports`."""
    try:
        family = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as error:
        raise OSError(
            errno.EADDRNOTAVAIL,
            f"Cannot resolve the parameter server's host {host!r} ({error}); pass an address of "
            "this machine, such as spark.driver.host.",
        ) from None
    for port in ports:
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, port))
        except OSError as error:
            listener.close()
            if error.errno == errno.EADDRINUSE:
                continue
            raise OSError(
                error.errno,
                f"Cannot bind the parameter server to {host}:{port}: {error.strerror}. Pass an "
                "address of this machine, such as spark.driver.host.",
            ) from None
        listener.listen(128)
        return listener
    raise OSError(
        errno.EADDRINUSE,
        f"No free port for the parameter server on {host} among {ports[0]}..{ports[-1]}; widen "
        "the range (TrainingConfig.server_port) or free a port.",
    )


def _peer_name(peer):
    return f"{peer[0]}:{peer[1]}"


def _shut(sock):
    """Ends a socket's connection now, waking any thread blocked on it.

    `socket.socket.shutdown` is called directly so that a TLS socket is shut
    at the TCP level without tearing down its TLS state under a reader.
    """
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass
