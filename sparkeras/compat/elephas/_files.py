"""Model files of the elephas layer: `.keras`/`.h5` with elephas' settings inside.

Driver-side module. Files go to and come from any `pyarrow.fs` file system
(elephas' `to_hadoop`/`from_hadoop`); the settings live in the `.h5` file's
`distributed_config` attribute (elephas' place) or in a `.keras` archive entry.
"""

import json
import os
import tempfile
import zipfile

from sparkeras.uri_files import read_bytes, resolve

_CONFIG_ENTRY = "sparkeras_elephas.json"


def write_h5_config(file_name, config, mode="w", encoder=None):
    """Writes `config` as the `distributed_config` attribute of an HDF5 file; returns it open.

    The file is closed on return unless `mode` leaves it to the caller: the
    caller gets the open `h5py.File` to add datasets, inside a `with`.
    """
    import h5py

    handle = h5py.File(file_name, mode=mode)
    handle.attrs["distributed_config"] = json.dumps(config, cls=encoder).encode("utf8")
    return handle


def read_h5_config(file_name, object_hook=None):
    """The `distributed_config` of an HDF5 file written by elephas or this layer."""
    import h5py

    with h5py.File(file_name, mode="r") as handle:
        raw = handle.attrs.get("distributed_config")
    return json.loads(raw, object_hook=object_hook) if raw is not None else {}


def save_model(model, file_name, config, overwrite=False, to_hadoop=False):
    """Saves a Keras model with `config` inside to a path or `pyarrow.fs` URI."""
    check_model_file(file_name)
    target = _hadoop_uri(file_name) if to_hadoop else file_name
    with tempfile.TemporaryDirectory(prefix="sparkeras-elephas-") as folder:
        local = os.path.join(folder, os.path.basename(file_name))
        model.save(local)
        if local.endswith(".h5"):
            write_h5_config(local, config, mode="a").close()
        else:
            with zipfile.ZipFile(local, mode="a") as archive:
                archive.writestr(_CONFIG_ENTRY, json.dumps(config))
        _put(local, target, overwrite)


def load_model(file_name, from_hadoop=False, custom_objects=None):
    """Returns `(keras_model, config)` of a file `save_model` (or elephas) wrote."""
    import keras

    check_model_file(file_name)
    source = _hadoop_uri(file_name) if from_hadoop else file_name
    with tempfile.TemporaryDirectory(prefix="sparkeras-elephas-") as folder:
        local = _get(source, os.path.join(folder, os.path.basename(file_name)))
        config = _read_config(local)
        model = keras.saving.load_model(local, custom_objects=custom_objects)
    return model, config


def check_model_file(file_name):
    """Refuses a model file name that is neither `.keras` nor `.h5`."""
    if not str(file_name).endswith((".h5", ".keras")):
        raise ValueError(
            "The file name must end with .keras (or .h5, the legacy format). "
            f"Received: file_name={file_name!r}"
        )


def _hadoop_uri(path):
    """elephas' Hadoop paths: a bare path means `hdfs://` + path."""
    return path if "://" in path else "hdfs://" + ("" if path.startswith("/") else "/") + path


def _put(local, target, overwrite):
    """Copies the local file to a path or URI; an existing one only with `overwrite`."""
    from pyarrow import fs

    filesystem, path = resolve(target)
    if not overwrite and filesystem.get_file_info(path).type != fs.FileType.NotFound:
        raise FileExistsError(
            f"{target!r} already exists. Pass overwrite=True to replace it. "
            f"Received: file_name={target!r}"
        )
    with open(local, "rb") as source, filesystem.open_output_stream(path) as sink:
        sink.write(source.read())


def _get(source, local):
    """The local path of `source`, copied to `local` first if it is a URI."""
    if "://" not in source:
        return source
    with open(local, "wb") as sink:
        sink.write(read_bytes(source))
    return local


def _read_config(local):
    """The settings saved in a model file ({} for a plain Keras file)."""
    if local.endswith(".h5"):
        return read_h5_config(local)
    with zipfile.ZipFile(local) as archive:
        if _CONFIG_ENTRY not in archive.namelist():
            return {}
        return json.loads(archive.read(_CONFIG_ENTRY))
