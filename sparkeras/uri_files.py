"""Files at a local path or at any URI `pyarrow.fs` supports (s3://, hdfs://, ...).

Driver-side module, used by checkpoints (`sparkeras.checkpoint`) and by the
elephas layer's model files (`sparkeras.compat.elephas`).

Example:
>>> filesystem, path = resolve("s3://bucket/run")
>>> filesystem.create_dir(path, recursive=True)
>>> data = read_bytes("hdfs:///models/digits.keras")
"""

import os

__all__ = ["read_bytes", "resolve"]


def resolve(location):
    """The `pyarrow.fs` file system of `location` and its path in it.

    A URI (it has "://") goes to `FileSystem.from_uri`; anything else is a
    local path, made absolute.

    Example:
    >>> resolve("run")
    (<pyarrow._fs.LocalFileSystem ...>, '/home/me/run')
    """
    from pyarrow import fs

    location = str(location)
    if "://" in location:
        return fs.FileSystem.from_uri(location)
    return fs.LocalFileSystem(), os.path.abspath(location)


def read_bytes(location):
    """The bytes of the file at `location` (a local path or a URI).

    Raises:
        FileNotFoundError: there is no such file.

    Example:
    >>> read_bytes("s3://bucket/run/state.sparkeras")[:8]
    b'SPKCKPT1'
    """
    filesystem, path = resolve(location)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()
