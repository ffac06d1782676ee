"""The `train`, `evaluate` and `predict` jobs of the `sparkeras` command.

Driver-side module, shared by the console command and the spark-submit entry
(`sparkeras/submit.py`). Each job checks its paths before it reads any data,
so a typo fails in a second, not after a Spark job.
"""

import json
import os
from dataclasses import dataclass

__all__ = ["JobOptions", "check", "evaluate", "predict", "read_data", "train"]

_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class JobOptions:
    """What a job reads and writes, the columns that feed the model, and the training settings.

    Attributes:
        data: Parquet or CSV input (a file or a folder).
        model: `.keras` file: the compiled model to train, or the trained one.
        output: Trained `.keras` model (train), Parquet folder (predict), or
            JSON metrics file (evaluate; None prints them).
        data_format: "parquet" or "csv"; None infers it from the extension.
        features_col: A column name, or a list of column names.
        label_col: Label column (train, evaluate).
        epochs: Training epochs.
        batch_size: Samples per training step on each worker.
        mode: "synchronous", "asynchronous" or "hogwild".
        num_workers: Training tasks; every task slot if None.

    Example:
    >>> JobOptions(data="digits.parquet", model="mlp.keras", output="trained.keras", epochs=5)
    """

    data: str
    model: str
    output: str = None
    data_format: str = None
    features_col: object = "features"
    label_col: str = "label"
    epochs: int = 1
    batch_size: int = 32
    mode: str = "synchronous"
    num_workers: int = None


def read_data(spark, path, data_format=None):
    """Reads a Parquet or CSV file (or folder) into a DataFrame.

    CSV files need a header row; column types are inferred.

    Args:
        spark: The SparkSession.
        path: File or folder to read.
        data_format: "parquet" or "csv"; None infers it from the extension.

    Example:
    >>> read_data(spark, "digits.csv").printSchema()
    """
    if _data_format(path, data_format) == "csv":
        return spark.read.csv(path, header=True, inferSchema=True)
    return spark.read.parquet(path)


def train(spark, options):
    """Trains the compiled model on the data and saves it; returns the last epoch's metrics.

    Example:
    >>> train(spark, JobOptions(data="d.parquet", model="mlp.keras", output="out.keras"))
    {'accuracy': 0.97, 'loss': 0.09}
    """
    from sparkeras.spark_model import SparkModel

    check("train", options)
    frame = read_data(spark, options.data, options.data_format)
    spark_model = SparkModel.load(options.model, mode=options.mode, num_workers=options.num_workers)
    history = spark_model.fit(
        frame,
        features_col=options.features_col,
        label_col=options.label_col,
        epochs=options.epochs,
        batch_size=options.batch_size,
        callbacks=[_epoch_printer(options.epochs)],
        verbose=0,
    )
    spark_model.save(options.output)
    return {name: values[-1] for name, values in history.history.items()}


def _epoch_printer(epochs):
    """A Keras callback printing each epoch's global metrics on one line."""
    import keras

    def report(epoch, logs):
        metrics = "  ".join(f"{name}={value:.4f}" for name, value in sorted(logs.items()))
        print(f"epoch {epoch + 1}/{epochs}  {metrics}", flush=True)

    return keras.callbacks.LambdaCallback(on_epoch_end=report)


def evaluate(spark, options):
    """Returns the trained model's loss and metrics on the data; writes them as JSON to `output`.

    Example:
    >>> evaluate(spark, JobOptions(data="test.parquet", model="trained.keras"))
    {'accuracy': 0.96, 'loss': 0.12}
    """
    from sparkeras.spark_model import SparkModel

    check("evaluate", options)
    frame = read_data(spark, options.data, options.data_format)
    spark_model = SparkModel.load(options.model)
    metrics = spark_model.evaluate(frame, options.features_col, options.label_col)
    if options.output is not None:
        with open(options.output, "w", encoding="utf-8") as handle:
            json.dump(metrics, handle, indent=2)
    return metrics


def predict(spark, options):
    """Writes the data with a `prediction` column to `output` as Parquet; returns `output`.

    Example:
    >>> predict(spark, JobOptions(data="new.parquet", model="trained.keras", output="scored"))
    'scored'
    """
    from sparkeras.spark_model import SparkModel

    check("predict", options)
    frame = read_data(spark, options.data, options.data_format)
    SparkModel.load(options.model).predict(frame, options.features_col).write.parquet(
        options.output
    )
    return options.output


def _data_format(path, data_format):
    """`data_format`, or the format the extension of `path` names."""
    data_format = data_format or _EXTENSIONS.get(os.path.splitext(path.rstrip("/"))[1].lower())
    if data_format not in ("parquet", "csv"):
        raise ValueError(
            "Cannot tell the format of the data from its name: pass --format parquet or "
            f"--format csv, or name it *.parquet or *.csv. Received: --data={path!r}"
        )
    return data_format


def check(command, options):
    """Checks the paths a job reads and writes, before any Spark session or job starts.

    Args:
        command: "train", "evaluate" or "predict".
        options: The job's `JobOptions`.

    Raises:
        FileNotFoundError: The model or the data is not there.
        ValueError: The data's format is unknown, or `output` is missing or, for
            train, does not end with `.keras`.

    Example:
    >>> check("train", JobOptions(data="d.parquet", model="mlp.keras", output="out.keras"))
    """
    if not options.model.endswith(".keras") or not os.path.isfile(options.model):
        raise FileNotFoundError(
            "--model must be an existing .keras file (saved with model.save('name.keras')). "
            f"Received: --model={options.model!r}"
        )
    if ":" not in options.data and not os.path.exists(options.data):
        raise FileNotFoundError(
            "No file or folder at --data (a local path, or a URI such as hdfs://...). "
            f"Received: --data={options.data!r}"
        )
    _data_format(options.data, options.data_format)
    if command == "train" and not (options.output or "").endswith(".keras"):
        raise ValueError(
            "--output must be the .keras file to save the trained model to. "
            f"Received: --output={options.output!r}"
        )
    if command == "predict" and not options.output:
        raise ValueError(
            "--output must be the folder to write the Parquet predictions to. "
            f"Received: --output={options.output!r}"
        )
