"""docs/errors.md lists every user-facing error, each in the code and raised by a test.

Three checks keep the page true: every listed message is in the package's
source, every raise with a message in the user-facing modules is listed, and
every listed test exists. The errors no other test raises are raised here.
"""

import ast
import pathlib
import re
import sys

import numpy as np
import pytest
from helpers import REPO_DIR, dense_classifier

ROOT = pathlib.Path(REPO_DIR)
DOC = ROOT / "docs" / "errors.md"
PACKAGE = ROOT / "sparkeras"

# Protocol internals: they answer a misbehaving peer, never a user's call
# (docs/wire-format.md), or re-raise an error already listed.
_INTERNAL_MODULES = {
    "ps/codec.py",
    "ps/channel.py",
    "ps/auth.py",
    "ps/aggregation.py",
    "ps/coordinator.py",
    "ps/progress_reports.py",
    "__init__.py",
    "data/__init__.py",
    "compat/elephas/__init__.py",
}
_INTERNAL_TYPES = {"CodecError", "ProtocolVersionError", "ConnectionClosed", "RemoteError"}
# Messages in user-facing modules that only sparkeras' own code can trigger.
_INTERNAL_MESSAGES = {
    "A 'progress' request": "a worker's progress report, checked by the server",
    "must map metric names to numbers": "a worker's request, checked by the server",
    "warnings must be a list": "a worker's progress report, checked by the server",
    "Each warning must be a dict": "a worker's progress report, checked by the server",
    "resolve_data_spec takes the DataFrame's schema": "internal call",
    "input_dtypes needs one dtype per model input": "internal call",
    "The spec describes": "internal call",
    "The Arrow batches lack the projected column": "internal call",
    "it does not start with the sparkeras checkpoint marker": "wrapped in a listed CheckpointError",
    "its tensors do not match the recorded SHA-256": "wrapped in a listed CheckpointError",
    "handler must be callable": "the server's own handler",
    "The parameter server has no address before start()": "the server's own use",
    "This parameter server is": "the server's own use",
    "must be a positive number": "the server's internal limits",
    "The pruning masks in the task's plan": "a relaunch racing the driver; launched again",
    "the driver relaunches every worker instead": "a retried task's end; the driver relaunches",
}


def _entries():
    """(type, message fragment, test node id) of each row of docs/errors.md."""
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        spans = re.findall(r"`([^`]+)`", cells[0])
        node = re.findall(r"`([^`]+)`", cells[-1])[0]
        rows.append((spans[0], spans[1], node))
    return rows


def _text(node):
    """The string constants of an expression, joined (f-string holes left out)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return "".join(_text(child) for child in ast.iter_child_nodes(node))


def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _user_facing_raises():
    for module, tree in _sources():
        if module in _INTERNAL_MODULES:
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            kind = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", ""))
            message = "".join(_text(arg) for arg in node.exc.args)
            if kind in _INTERNAL_TYPES or len(message) < 12:
                continue  # no message of its own: a re-raise or a pass-through
            yield f"{module}:{node.lineno}", kind, message


ENTRIES = _entries()


def test_the_page_lists_errors():
    assert len(ENTRIES) > 50


@pytest.mark.parametrize("kind, fragment, node", ENTRIES, ids=[e[1][:40] for e in ENTRIES])
def test_each_listed_message_is_in_the_code(kind, fragment, node):
    strings = "\n".join(
        _text(n)
        for _, tree in _sources()
        for n in ast.walk(tree)
        if isinstance(n, (ast.Constant, ast.JoinedStr))
    )
    assert fragment in strings, f"{fragment!r} ({kind}) is in docs/errors.md but not in the code"


def test_every_user_facing_raise_is_listed():
    fragments = [fragment for _, fragment, _ in ENTRIES] + list(_INTERNAL_MESSAGES)
    missing = [
        f"{where} {kind}: {message[:80]}"
        for where, kind, message in _user_facing_raises()
        if not any(fragment in message for fragment in fragments)
    ]
    assert not missing, "Add these errors to docs/errors.md:\n" + "\n".join(missing)


@pytest.mark.parametrize("kind, fragment, node", ENTRIES, ids=[e[1][:40] for e in ENTRIES])
def test_each_listed_test_exists(kind, fragment, node):
    path, _, name = node.partition("::")
    source = (ROOT / path).read_text(encoding="utf-8")
    assert re.search(rf"^def {re.escape(name)}\(", source, re.MULTILINE), node


# The errors no other test raises -----------------------------------------------


def _frame(spark, **extra):
    import pandas as pd

    columns = {"features": [np.zeros(64, "float32")] * 8, "label": [0, 1] * 4, **extra}
    return spark.createDataFrame(pd.DataFrame(columns))


def _failing_on_workers():
    import keras

    class FailsOnWorkers(keras.layers.Layer):
        def call(self, inputs):
            from pyspark import TaskContext

            if TaskContext.get() is not None:
                raise RuntimeError("simulated executor failure")
            return inputs

    model = keras.Sequential([keras.Input((64,)), FailsOnWorkers(), keras.layers.Dense(10)])
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model, {"FailsOnWorkers": FailsOnWorkers}


def _trigger(fragment, request, tmp_path, monkeypatch):
    """Does what a user does to meet the error listed with `fragment`."""
    import keras

    from sparkeras import SparkModel, TrainingConfig

    def spark():
        return request.getfixturevalue("spark")

    if fragment == "SparkModel needs a keras.Model":
        SparkModel("model.keras")
    elif fragment == "output_col. Received: output_col=":
        SparkModel(dense_classifier(), num_workers=1).predict(_frame(spark(), prediction=0.0))
    elif fragment == "resume=True needs the checkpoint_dir":
        SparkModel(dense_classifier(), num_workers=1).fit(_frame(spark()), resume=True)
    elif fragment == "pass a larger epochs to train more":
        from sparkeras.checkpoint import save_checkpoint

        model = dense_classifier()
        save_checkpoint(str(tmp_path), 2, model.get_weights(), [], {"loss": [1.0, 0.5]})
        SparkModel(model, num_workers=1).fit(
            _frame(spark()), epochs=2, checkpoint_dir=str(tmp_path), resume=True
        )
    elif fragment == "time(s); giving up":
        model, custom = _failing_on_workers()
        SparkModel(
            model, num_workers=1, custom_objects=custom, config=TrainingConfig(max_attempts=1)
        ).fit(_frame(spark()), verbose=0)
    elif fragment in (
        "Cannot resolve the parameter server's host",
        "Cannot bind the parameter server to",
    ):
        from sparkeras.ps import ParameterServer

        host = "no-such-host.invalid" if "resolve" in fragment else "192.0.2.1"
        ParameterServer(lambda op, header, tensors: ({}, []), host=host, secret=b"s" * 32).start()
    elif fragment == "TLSConfig.self_signed needs the cryptography package":
        from sparkeras.ps import TLSConfig

        monkeypatch.setitem(sys.modules, "cryptography", None)
        TLSConfig.self_signed(str(tmp_path))
    elif fragment == "Several devices per task need the tensorflow or jax backend":
        from sparkeras.worker.devices import pin_devices, plan_devices

        pin_devices("torch", plan_devices([], 2))
    elif fragment == "The replica should span":
        from sparkeras.worker.devices import plan_devices, replica_devices

        replica_devices("tensorflow", plan_devices([], 64))
    elif fragment == "Under JAX every batch must split evenly over the":
        from sparkeras import multigpu

        multigpu._checked(lambda x, y, batch_size, *args, **kwargs: None, 2)(
            np.zeros((5, 1)), None, 4
        )
    elif fragment.startswith("A TensorFlow SavedModel"):
        from sparkeras.export import export_saved_model

        monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
        export_saved_model(dense_classifier(), str(tmp_path / "saved"))
    elif fragment.startswith("--output must be the folder"):
        from sparkeras import jobs

        (tmp_path / "data.parquet").mkdir()
        (tmp_path / "m.keras").write_bytes(b"")
        jobs.check(
            "predict",
            jobs.JobOptions(data=str(tmp_path / "data.parquet"), model=str(tmp_path / "m.keras")),
        )
    elif fragment in ("expected key=value", "expected a,b,c"):
        from sparkeras import cli

        cli._conf_pair("novalue") if "key" in fragment else cli._column_list(" , ")
    elif fragment == "params must be a dict of param names to values":
        pytest.importorskip("mlflow")
        from sparkeras.callbacks import MLflowLogger

        MLflowLogger(params=["data"])
    elif fragment in ("row must have", "validation_split must be in [0, 1)"):
        from sparkeras.compat.elephas import SparkModel as ElephasModel
        from sparkeras.compat.elephas import to_simple_rdd

        model = dense_classifier()
        context = spark().sparkContext
        if fragment == "row must have":
            ElephasModel(model, num_workers=1).evaluate(np.zeros((4, 3)), np.zeros(4, "int64"))
        ElephasModel(model, num_workers=1).fit(
            to_simple_rdd(context, np.zeros((4, 64)), np.zeros(4, "int64")), validation_split=1.5
        )
    elif fragment.startswith("ElephasEstimator needs"):
        from sparkeras.compat.elephas import ElephasEstimator

        settings = (
            {}
            if "keras_model_config" in fragment
            else {"keras_model_config": dense_classifier().to_json(), "loss": "mse"}
        )
        ElephasEstimator(**settings).fit(_frame(spark()))
    else:
        raise AssertionError(f"no trigger for {fragment!r}")


MINE = [entry for entry in ENTRIES if entry[2].startswith("tests/driver/test_errors_doc.py::")]


@pytest.mark.parametrize("kind, fragment, node", MINE, ids=[e[1][:40] for e in MINE])
def test_documented_error_is_raised(kind, fragment, node, request, tmp_path, monkeypatch):
    with pytest.raises(Exception) as info:
        _trigger(fragment, request, tmp_path, monkeypatch)
    names = {cls.__name__ for cls in type(info.value).__mro__}
    assert kind in names, (kind, type(info.value), str(info.value)[:300])
    assert fragment in str(info.value)
