"""notebooks/quickstart.ipynb runs top to bottom in a real Jupyter kernel."""

import os

import pytest
from helpers import REPO_DIR

NOTEBOOK = os.path.join(REPO_DIR, "notebooks", "quickstart.ipynb")

pytestmark = pytest.mark.spark


def test_quickstart_notebook_runs_without_error(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error

    outputs = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    ]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    # The fit showed Jupyter's progress widget, then one summary line per epoch.
    widgets = [
        o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert widgets, "the fit showed no progress widget"
    assert "Epoch 1/4 - " in text and "samples/s - accuracy: " in text
    assert "test accuracy 0.9" in text
    assert "pipeline accuracy 0." in text and "reloaded model accuracy" in text
    # The sections on modes, checkpoints and resume, MLflow and TensorBoard ran.
    assert "asynchronous test accuracy 0." in text
    assert "Epoch 3/3 - " in text  # the resumed fit trained the third epoch only
    assert "MLflow run " in text and "val_accuracy" in text and "TensorBoard logs: [" in text
