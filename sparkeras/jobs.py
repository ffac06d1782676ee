"""The `train`, `evaluate` and `predict` jobs of the `sparkeras` command.

Driver-side module, shared by the console command and the spark-submit entry
(`sparkeras/submit.py`). Before any Spark session starts, `check` looks at
the paths and `prepare` loads the model and checks the columns against the
schema read from the files' footers or header (pyarrow, no Spark), so a typo
fails in seconds, not after a session start.
"""

import json
import os
from dataclasses import dataclass

__all__ = ["JobOptions", "check", "evaluate", "predict", "prepare", "read_data", "train"]

_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
_SPARK_SCHEMA_KEY = b"org.apache.spark.sql.parquet.row.metadata"


@dataclass(frozen=True)
class JobOptions:
    """What a job reads and writes, the columns that feed the model, and the settings.

    Attributes:
        data: Parquet or CSV input (a file or a folder).
        model: `.keras` file: the compiled model to train, or the trained one.
        output: Trained `.keras` model (train), Parquet folder (predict), or
            JSON metrics file (evaluate; None prints them).
        data_format: "parquet" or "csv"; None infers it from the extension.
        features_col: A column name, or a list of column names.
        label_col: Label column (train, evaluate).
        epochs: Training epochs (the total, resumed ones included).
        batch_size: Samples per training step on each worker.
        mode: "synchronous", "asynchronous" or "hogwild".
        num_workers: Training tasks; every task slot if None.
        frequency: When workers exchange weights: "epoch", "batch" or an int.
        validation_data: Parquet or CSV file whose metrics appear as `val_*`.
        checkpoint_dir: Where train writes a checkpoint after every epoch.
        resume: Continue the fit checkpointed in `checkpoint_dir`.
        prediction_col: predict: column of the predicted class (classifiers)
            or of the model's output.
        probability_col: predict: column of a classifier's outputs; "" for none.
        raw: predict: write the raw outputs to `prediction_col`, also for classifiers.

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
    frequency: object = "epoch"
    validation_data: str = None
    checkpoint_dir: str = None
    resume: bool = False
    prediction_col: str = "prediction"
    probability_col: str = "probability"
    raw: bool = False


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


def prepare(command, options):
    """Loads the job's model and checks the data's columns against it, with no Spark session.

    The schema comes from the Parquet footer (Spark's own schema, which Spark
    writes there) or the CSV header and first rows, read with pyarrow. Data
    that is not a local path (hdfs://, s3a://...) is checked by the job, once
    Spark reads it.

    Args:
        command: "train", "evaluate" or "predict".
        options: The job's `JobOptions`, already through `check`.

    Returns:
        The `SparkModel` the job runs.

    Raises:
        DataSchemaError: A column is missing, or does not fit the model.
        ValueError: The model is not compiled (train, evaluate).

    Example:
    >>> spark_model = prepare("train", JobOptions(data="d.parquet", model="mlp.keras",
    ...                                           output="out.keras"))
    """
    from sparkeras import options as checks
    from sparkeras.data import resolve_data_spec
    from sparkeras.data.errors import DataSchemaError
    from sparkeras.spark_model import SparkModel

    settings = {}
    if command == "train":
        settings = {"mode": options.mode, "frequency": options.frequency,
                    "num_workers": options.num_workers}
    spark_model = SparkModel.load(options.model, **settings)
    compiled = command != "predict"
    shapes = checks.check_model(spark_model.model, compiled=compiled)
    label_col = options.label_col if compiled else None
    sources = [("--data", options.data)]
    if command == "train" and options.validation_data:
        sources.append(("--validation-data", options.validation_data))
    for flag, path in sources:
        schema = _file_schema(path, options.data_format)
        if schema is None:
            continue
        try:
            resolve_data_spec(schema, options.features_col, label_col, *shapes)
        except DataSchemaError as error:
            raise DataSchemaError(f"In {flag}={path!r}: {error}") from None
    return spark_model


def train(spark, options, spark_model):
    """Trains the model on the data and saves it; returns the last epoch's metrics.

    Prints one line per epoch, as `SparkModel.fit(verbose=2)` does.

    Example:
    >>> options = JobOptions(data="d.parquet", model="mlp.keras", output="out.keras")
    >>> train(spark, options, prepare("train", options))
    {'accuracy': 0.97, 'loss': 0.09}
    """
    frame = read_data(spark, options.data, options.data_format)
    validation = None
    if options.validation_data:
        validation = read_data(spark, options.validation_data, options.data_format)
    history = spark_model.fit(
        frame,
        features_col=options.features_col,
        label_col=options.label_col,
        epochs=options.epochs,
        batch_size=options.batch_size,
        validation_data=validation,
        verbose=2,
        checkpoint_dir=options.checkpoint_dir,
        resume=options.resume,
    )
    spark_model.save(options.output)
    return {name: values[-1] for name, values in history.history.items()}


def evaluate(spark, options, spark_model):
    """Returns the trained model's loss and metrics on the data; writes them as JSON to `output`.

    Example:
    >>> options = JobOptions(data="test.parquet", model="trained.keras")
    >>> evaluate(spark, options, prepare("evaluate", options))
    {'accuracy': 0.96, 'loss': 0.12}
    """
    frame = read_data(spark, options.data, options.data_format)
    metrics = spark_model.evaluate(frame, options.features_col, options.label_col)
    if options.output is not None:
        with open(options.output, "w", encoding="utf-8") as handle:
            json.dump(metrics, handle, indent=2)
    return metrics


def predict(spark, options, spark_model):
    """Writes the data with its prediction columns to `output` as Parquet; returns `output`.

    As `SparkModel.predict`: a classifier writes the class to
    `prediction_col` and its outputs to `probability_col`; other models, or
    `raw`, write the outputs to `prediction_col`.

    Example:
    >>> options = JobOptions(data="new.parquet", model="trained.keras", output="scored")
    >>> predict(spark, options, prepare("predict", options))
    'scored'
    """
    frame = read_data(spark, options.data, options.data_format)
    spark_model.predict(
        frame,
        options.features_col,
        output_col=options.prediction_col,
        probability_col=options.probability_col,
        raw=options.raw,
    ).write.parquet(options.output)
    return options.output


def _file_schema(path, data_format):
    """The Spark schema of a local Parquet or CSV file or folder; None if not local."""
    import pyarrow as pa
    from pyarrow import dataset
    from pyspark.sql.pandas.types import from_arrow_schema
    from pyspark.sql.types import StructType

    if ":" in path:
        return None
    file_format = _data_format(path, data_format)
    try:
        if file_format == "parquet":
            schema = dataset.dataset(path, format="parquet").schema
            spark_json = (schema.metadata or {}).get(_SPARK_SCHEMA_KEY)
            if spark_json is not None:
                return StructType.fromJson(json.loads(spark_json))
        else:
            schema = dataset.dataset(path, format="csv").schema
        return from_arrow_schema(schema)
    except (pa.ArrowException, OSError, TypeError, ValueError):
        return None  # Spark reads it, or says what is wrong with it, in the job


def _data_format(path, data_format, flag="--data"):
    """`data_format`, or the format the extension of `path` (given as `flag`) names."""
    data_format = data_format or _EXTENSIONS.get(os.path.splitext(path.rstrip("/"))[1].lower())
    if data_format not in ("parquet", "csv"):
        raise ValueError(
            "Cannot tell the format of the data from its name: pass --format parquet or "
            f"--format csv, or name it *.parquet or *.csv. Received: {flag}={path!r}"
        )
    return data_format


def check(command, options):
    """Checks the paths a job reads and writes, before any Spark session or job starts.

    Args:
        command: "train", "evaluate" or "predict".
        options: The job's `JobOptions`.

    Raises:
        FileNotFoundError: The model, the data or the validation data is not there.
        ValueError: The data's format is unknown, `output` is missing or, for
            train, does not end with `.keras`, or `resume` has no `checkpoint_dir`.

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
    validation = options.validation_data
    if validation and ":" not in validation and not os.path.exists(validation):
        raise FileNotFoundError(
            "No file or folder at --validation-data (a local path, or a URI such as "
            f"hdfs://...). Received: --validation-data={validation!r}"
        )
    if validation:
        _data_format(validation, options.data_format, "--validation-data")
    if options.resume and not options.checkpoint_dir:
        raise ValueError(
            "--resume continues the fit checkpointed in --checkpoint-dir: pass the same "
            "--checkpoint-dir as the fit to continue. Received: --checkpoint-dir=None"
        )
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
