"""Driver-side Keras callbacks for sparkeras fits, and what a fit tells them.

Driver-side module. Every Keras callback passed to `SparkModel.fit` runs on
the driver with global logs (summed over the workers by sample count):
`on_epoch_end` gets the epoch's global metrics, `on_train_batch_end` gets the
global running metrics at each progress report (about every 0.5 s, `batch`
counting the steps of all workers), and what the callbacks decide
(`model.stop_training`, a new learning rate) goes back to every worker.
`self.params` holds `epochs`, `verbose`, `batch_size`, `mode`, `frequency`
and `num_workers`.

`MLflowLogger` logs a fit to MLflow; it needs the `mlflow` extra:
`pip install "sparkeras[mlflow]"`.

Example:
>>> from sparkeras.callbacks import MLflowLogger
>>> with mlflow.start_run():
...     sm.fit(df, epochs=5, callbacks=[MLflowLogger(),
...                                     keras.callbacks.EarlyStopping(patience=2)])
"""

import math
import os
import tempfile

import keras

from sparkeras.progress import WorkerWarning

__all__ = ["MLflowLogger", "WorkerWarning"]


def _import_mlflow():
    """Imports mlflow, or says how to install it."""
    try:
        import mlflow
    except ImportError as error:
        raise ImportError(
            "MLflowLogger needs the mlflow package. Install it with "
            '`pip install "sparkeras[mlflow]"` (or `pip install mlflow`). '
            f"Received: {error}"
        ) from error
    return mlflow


class MLflowLogger(keras.callbacks.Callback):
    """Logs a fit's params, per-epoch global metrics and final model to MLflow.

    Logs to the active MLflow run; with none active, starts one at the start
    of the fit (named `run_name`) and ends it at the end. Params are the
    fit's settings (`epochs`, `batch_size`, `mode`, `frequency`,
    `num_workers`), the optimizer's name and learning rate, and `params`.
    Metrics are logged once per epoch with `step=epoch`. At the end the
    trained model is logged as a `.keras` file under `artifact_path`.

    Args:
        log_model: Log the trained model at the end of the fit.
        artifact_path: Artifact folder of the model.
        params: Extra params to log, a dict.
        run_name: Name of the run started when none is active.

    Example:
    >>> import mlflow
    >>> mlflow.set_tracking_uri("file:/tmp/mlruns")
    >>> with mlflow.start_run() as run:
    ...     sm.fit(train_df, epochs=3, callbacks=[MLflowLogger(params={"data": "digits"})])
    >>> mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, "loss")
    """

    def __init__(self, log_model=True, artifact_path="model", params=None, run_name=None):
        super().__init__()
        self._mlflow = _import_mlflow()
        if params is not None and not isinstance(params, dict):
            raise TypeError(
                f"params must be a dict of param names to values. Received: params={params!r}"
            )
        self.log_model = log_model
        self.artifact_path = artifact_path
        self.extra_params = dict(params or {})
        self.run_name = run_name
        self._started_run = False

    def on_train_begin(self, logs=None):
        mlflow = self._mlflow
        if mlflow.active_run() is None:
            mlflow.start_run(run_name=self.run_name)
            self._started_run = True
        settings = {
            key: self.params[key]
            for key in ("epochs", "batch_size", "mode", "frequency", "num_workers")
            if self.params.get(key) is not None
        }
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            settings["optimizer"] = type(optimizer).__name__
            try:
                settings["learning_rate"] = float(
                    keras.ops.convert_to_numpy(optimizer.learning_rate)
                )
            except (TypeError, ValueError):  # a schedule: leave it out
                pass
        mlflow.log_params({**settings, **self.extra_params})

    def on_epoch_end(self, epoch, logs=None):
        metrics = {
            name: float(value)
            for name, value in (logs or {}).items()
            if isinstance(value, (int, float)) and math.isfinite(value)
        }
        if metrics:
            self._mlflow.log_metrics(metrics, step=epoch)

    def on_train_end(self, logs=None):
        try:
            if self.log_model:
                with tempfile.TemporaryDirectory(prefix="sparkeras-mlflow-") as folder:
                    path = os.path.join(folder, f"{self.model.name}.keras")
                    self.model.save(path)
                    self._mlflow.log_artifact(path, artifact_path=self.artifact_path)
        finally:
            if self._started_run:
                self._mlflow.end_run()
                self._started_run = False
