"""Atomic, verified checkpoints of a fit's global state.

Driver-side module. After each epoch the driver writes the global weights,
the optimizer state, the number of completed epochs and the history so far
into one file, `state.sparkeras`, inside `checkpoint_dir`: first to a
temporary file, then moved over the old one, so a crash mid-write leaves the
previous checkpoint intact. The file carries a SHA-256 of its tensors; a
corrupted or half-written file is refused, never loaded silently. Paths are
local or any URI `pyarrow.fs` supports (e.g. `s3://bucket/run`, `hdfs://...`).

File layout: `SPKCKPT1` | u64 little-endian JSON length | JSON | `.npz` bytes
(numeric arrays only, loaded with `allow_pickle=False`).
"""

import hashlib
import io
import json
import struct
import uuid

import numpy as np

from sparkeras.uri_files import resolve

_MAGIC = b"SPKCKPT1"
_FILE_NAME = "state.sparkeras"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupted or half-written.

    Example:
    >>> raise CheckpointError("The checkpoint at /tmp/run is corrupted ...")
    """


def save_checkpoint(checkpoint_dir, epochs_done, weights, optimizer_state, history,
                    pruning=None):
    """Writes the state atomically; returns the checkpoint file's path.

    `pruning`, `(info, mask arrays)` of a pruned fit, is kept beside the
    weights (`sparkeras.pruning.distributed.DriverPruning.state`).

    Example:
    >>> save_checkpoint("/tmp/run", 2, model.get_weights(), [], {"loss": [0.9, 0.5]})
    """
    filesystem, folder = resolve(checkpoint_dir)
    filesystem.create_dir(folder, recursive=True)
    arrays = {f"w{i}": w for i, w in enumerate(weights)}
    arrays.update({f"o{i}": o for i, o in enumerate(optimizer_state or [])})
    pruning_info, masks = pruning if pruning is not None else (None, [])
    arrays.update({f"p{i}": m for i, m in enumerate(masks)})
    payload = io.BytesIO()
    np.savez(payload, **arrays)
    payload = payload.getvalue()
    header = json.dumps({
        "format": 1, "epochs_done": epochs_done, "history": history,
        "weights": len(weights), "optimizer": len(optimizer_state or []),
        "pruning": pruning_info, "masks": len(masks),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }).encode()
    final = f"{folder}/{_FILE_NAME}"
    temporary = f"{folder}/.{_FILE_NAME}.tmp-{uuid.uuid4().hex}"
    with filesystem.open_output_stream(temporary) as stream:
        stream.write(_MAGIC + struct.pack("<Q", len(header)) + header + payload)
    filesystem.move(temporary, final)
    return final


def load_checkpoint(checkpoint_dir):
    """Reads and verifies a checkpoint.

    Returns:
        dict with `epochs_done`, `history`, `weights`, `optimizer_state` and
        `pruning` (`(info, mask arrays)` or None).

    Raises:
        CheckpointError: nothing to resume from, or a damaged file.

    Example:
    >>> state = load_checkpoint("/tmp/run")
    >>> state["epochs_done"]
    2
    """
    filesystem, folder = resolve(checkpoint_dir)
    path = f"{folder}/{_FILE_NAME}"
    try:
        with filesystem.open_input_stream(path) as stream:
            data = stream.read()
    except FileNotFoundError as error:
        raise CheckpointError(
            f"There is no checkpoint to resume from in {checkpoint_dir!r} (no {_FILE_NAME}). "
            "Run fit without resume=True to start afresh, or pass the checkpoint_dir of an "
            f"earlier fit. Received: checkpoint_dir={checkpoint_dir!r}"
        ) from error
    try:
        return _decode(data)
    except (ValueError, KeyError, OSError, struct.error) as error:
        raise CheckpointError(
            f"The checkpoint {path!r} is corrupted or half-written ({error}); it was not "
            "loaded. Delete it and fit without resume=True, or restore a good copy. "
            f"Received: checkpoint_dir={checkpoint_dir!r}"
        ) from None


def _decode(data):
    if data[:8] != _MAGIC:
        raise ValueError("it does not start with the sparkeras checkpoint marker")
    (length,) = struct.unpack("<Q", data[8:16])
    header = json.loads(data[16 : 16 + length])
    payload = data[16 + length :]
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise ValueError("its tensors do not match the recorded SHA-256")
    with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
        weights = [arrays[f"w{i}"] for i in range(header["weights"])]
        optimizer_state = [arrays[f"o{i}"] for i in range(header["optimizer"])]
        masks = [arrays[f"p{i}"] for i in range(header.get("masks", 0))]
    pruning = None if header.get("pruning") is None else (header["pruning"], masks)
    return {"epochs_done": header["epochs_done"], "history": header["history"],
            "weights": weights, "optimizer_state": optimizer_state, "pruning": pruning}
