"""What the driver asks of a SparkSession, on a classic or a Spark Connect session.

Driver-side module. A classic session has a `SparkContext` (broadcasts, job
groups, the RDD API); a Spark Connect session (`SparkSession.builder.remote`)
has only the DataFrame and `spark.conf` APIs. Every call sparkeras makes that
differs between the two lives here, so the rest of the driver code reads the
same for both kinds: the classic path keeps its broadcasts and job groups,
the Connect path ships bytes in the task closure or as an artifact, tags its
jobs, and reads the task slots from `spark.conf`.
"""

import contextlib
import os
import re
import socket
import tempfile
import uuid

__all__ = [
    "cancel_job_group",
    "client_server_hosts",
    "conf_and_master",
    "is_connect",
    "job_description",
    "num_partitions",
    "set_job_group",
    "ship_bytes",
    "spark_context",
    "default_parallelism",
]

# Bytes up to this size travel in the task's closure on Connect; larger ones as an
# artifact file. The closure is part of the plan, a gRPC message that the server
# refuses beyond spark.connect.grpc.maxInboundMessageSize (128 MiB by default).
INLINE_LIMIT_BYTES = 16 << 20

_RANGE_SPLITS = re.compile(r"splits=(\d+)")
_ALL_INTERFACES = ("0.0.0.0", "::")


def is_connect(spark):
    """Whether `spark` is a Spark Connect session (no SparkContext behind it).

    Example:
    >>> is_connect(SparkSession.builder.remote("sc://localhost").getOrCreate())
    True
    """
    return type(spark).__module__.startswith("pyspark.sql.connect")


def spark_context(spark):
    """The session's SparkContext, or None on Spark Connect."""
    return None if is_connect(spark) else spark.sparkContext


def conf_and_master(spark):
    """The session's settings (anything with `.get(key, default)`) and master URL.

    Example:
    >>> conf, master = conf_and_master(spark)
    >>> conf.get("spark.task.cpus", "1"), master
    ('1', 'local[2]')
    """
    if is_connect(spark):
        return spark.conf, spark.conf.get("spark.master", None) or ""
    context = spark.sparkContext
    return context.getConf(), context.master


def default_parallelism(spark):
    """Spark's default parallelism, on a classic session or, from a plan, on Connect.

    On Connect it is read from the plan of `spark.range` (no job runs).

    Example:
    >>> default_parallelism(spark)
    2
    """
    context = spark_context(spark)
    if context is not None:
        return context.defaultParallelism
    splits = _RANGE_SPLITS.search(spark.range(1)._explain_string(mode="simple"))
    return int(splits.group(1)) if splits else 1


def num_partitions(frame):
    """The DataFrame's number of partitions, or None where Connect cannot say it."""
    if is_connect(frame.sparkSession):
        return None
    return frame.rdd.getNumPartitions()


def ship_bytes(spark, data, kind):
    """Makes `data` readable by tasks as `.value`: a broadcast, or a Connect holder.

    On a classic session, a Spark broadcast. On Connect, the bytes inside the
    task's closure when they are small (up to `INLINE_LIMIT_BYTES`), else an
    artifact file every node receives; a `kind` of "secret" always travels
    as an artifact, so it is never part of the plan the server may log.

    Args:
        spark: The session.
        data: The bytes to ship.
        kind: A short name for the artifact file ("model", "secret").

    Returns:
        An object with `.value` (the bytes, on executors) and `.destroy()`.

    Example:
    >>> shipped = ship_bytes(spark, model_to_bytes(model), "model")
    >>> task = make_train_task(plan, shipped)
    """
    from sparkeras.worker.shipped import ArtifactBytes, InlineBytes

    if not is_connect(spark):
        return spark.sparkContext.broadcast(data)
    if kind != "secret" and len(data) <= INLINE_LIMIT_BYTES:
        return InlineBytes(data)
    name = f"sparkeras-{kind}-{uuid.uuid4().hex}.bin"
    with tempfile.TemporaryDirectory(prefix="sparkeras-") as folder:
        path = os.path.join(folder, name)
        with open(path, "wb") as handle:
            handle.write(data)
        spark.addArtifacts(path, file=True)
    return ArtifactBytes(name)


def set_job_group(spark, group, description):
    """Marks the jobs this thread starts as `group` (a job group, or a Connect tag)."""
    if is_connect(spark):
        spark.addTag(group)  # Connect has no job description: the tag names the jobs
    else:
        spark.sparkContext.setJobGroup(group, description, interruptOnCancel=True)


def cancel_job_group(spark, group):
    """Cancels the running jobs of `group` (set by `set_job_group` in any thread)."""
    if is_connect(spark):
        spark.interruptTag(group)
    else:
        spark.sparkContext.cancelJobGroup(group)


@contextlib.contextmanager
def job_description(spark, description):
    """Describes the jobs started inside the block (in the Spark UI; not on Connect)."""
    context = spark_context(spark)
    if context is None:
        yield
        return
    context.setJobDescription(description)
    try:
        yield
    finally:
        context.setJobDescription(None)


def client_server_hosts(spark, server_host):
    """Where the parameter server binds, and the address tasks connect to, on Connect.

    The server runs in this client process, not beside the Spark driver, so
    `spark.driver.host` (the server's) does not apply. By default it binds to
    this machine's address on the route to the Connect server (127.0.0.1 for
    a local one) and advertises that address; `TrainingConfig.server_host`
    sets both, except that tasks cannot connect to all interfaces ("0.0.0.0").

    Example:
    >>> client_server_hosts(connect_session, None)
    {'host': '127.0.0.1', 'advertised_host': '127.0.0.1'}
    """
    # The client's channel builder knows the server's host (no public API says it).
    address = _route_address(getattr(spark.client._builder, "host", "localhost"))
    bind = server_host or address
    advertised = address if server_host in (None, "", *_ALL_INTERFACES) else server_host
    return {"host": bind, "advertised_host": advertised}


def _route_address(host):
    """This machine's address on the route to `host` (a UDP connect sends nothing)."""
    try:
        family = socket.getaddrinfo(host, None)[0][0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, 9))
            return probe.getsockname()[0]
    except OSError:
        return socket.gethostbyname(socket.gethostname())
