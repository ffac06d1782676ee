"""The parameter server: a secure TCP server on the driver and its client.

Workers on the executors exchange weights with a server that runs in a thread
on the driver: synchronous rounds through `RoundBarrier` and
`weighted_average`, asynchronous pushes through `AsyncStore`. The wire format
carries raw tensor bytes with JSON headers, never pickles, and every request
is authenticated with a per-fit secret (docs/wire-format.md).

Example:
>>> secret = secrets.token_bytes(32)
>>> barrier = RoundBarrier(2, weighted_average)
>>> def handler(op, header, tensors):
...     weights = barrier.contribute(header["round"], header["worker"],
...                                  (tensors, header["samples"]))
...     return {"round": header["round"]}, weights
>>> with ParameterServer(handler, host="127.0.0.1", secret=secret) as server:
...     with ParameterClient(*server.address, secret) as client:  # in each worker
...         _, average = client.call("sync", {"round": 0, "worker": 0, "samples": 64}, weights)
"""

from sparkeras.ps.aggregation import AsyncStore, RoundBarrier, weighted_average
from sparkeras.ps.client import ParameterClient, RemoteError
from sparkeras.ps.codec import CodecError, ProtocolVersionError
from sparkeras.ps.server import ParameterServer
from sparkeras.ps.tls import TLSConfig

__all__ = [
    "AsyncStore",
    "CodecError",
    "ParameterClient",
    "ParameterServer",
    "ProtocolVersionError",
    "RemoteError",
    "RoundBarrier",
    "TLSConfig",
    "weighted_average",
]
