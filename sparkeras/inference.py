"""Driver side of predict and evaluate: plans the jobs, never collects rows.

Driver-side module. The model travels once per call as a broadcast of its
`.keras` bytes (on Spark Connect: in the task's closure, or as an artifact
when large; see `sparkeras.session_access.ship_bytes`); executors cache it per
Python worker.
"""

import uuid


def _plan(model, spec, batch_size, custom_objects, devices_per_task=None):
    import keras

    from sparkeras.common.plan import InferencePlan

    return InferencePlan(
        model_key=f"model-{uuid.uuid4().hex}",
        data=spec,
        backend=keras.backend.backend(),
        batch_size=batch_size,
        custom_objects=custom_objects,
        devices_per_task=devices_per_task,
    )


def _broadcast(spark, model):
    from sparkeras.common.model_io import model_to_bytes
    from sparkeras.session_access import ship_bytes

    return ship_bytes(spark, model_to_bytes(model), "model")


def predict_frame(df, model, spec, output_fields, batch_size, custom_objects,
                  devices_per_task=None):
    """Returns `df` with the prediction columns appended (lazy DataFrame).

    The model runs in an Arrow UDF over the projected feature columns only,
    so the other columns never leave the JVM, and rows keep their order.

    Args:
        df: Input DataFrame; all its columns and rows are kept, in order.
        model: The Keras model to run.
        spec: `DataSpec` of the model inputs (no targets).
        output_fields: `StructField`s of the prediction columns.
        batch_size: Rows per `predict_on_batch` call.
        custom_objects: Passed to `keras.saving.load_model` on executors.
        devices_per_task: `TrainingConfig.devices_per_task`.
    """
    from pyspark.sql import functions
    from pyspark.sql.types import StructType

    from sparkeras.data import projection
    from sparkeras.worker.infer import make_predict_function

    names = [field.name for field in output_fields]
    function = make_predict_function(
        _plan(model, spec, batch_size, custom_objects, devices_per_task),
        _broadcast(df.sparkSession, model),
        names,
    )
    function.__name__ = "sparkeras_predict"  # the UDF's name in the query plan and Spark UI
    single = len(output_fields) == 1
    return_type = output_fields[0].dataType if single else StructType(output_fields)
    predict = functions.arrow_udf(function, return_type).asNondeterministic()
    predictions = predict(*projection(spec))
    if single:
        return df.withColumn(names[0], predictions)
    holder = "__sparkeras_predictions"
    kept = [functions.col(f"`{name}`") for name in df.columns]
    return df.withColumn(holder, predictions).select(
        *kept, *(functions.col(holder).getField(name).alias(name) for name in names)
    )


def is_classifier(output_shapes):
    """Whether a model reads as a classifier: one output of shape `(None, k)`, k >= 2.

    Example:
    >>> is_classifier([(None, 10)]), is_classifier([(None, 1)])
    (True, False)
    """
    if len(output_shapes) != 1 or len(output_shapes[0]) != 2:
        return False
    return (output_shapes[0][1] or 0) >= 2


def with_predicted_class(scored, scores_col, prediction_col, keep_scores=True):
    """Adds the argmax of the `array` column `scores_col` as a double class index.

    Spark ML's convention for classifiers: `prediction_col` holds the class
    (0.0, 1.0, ...), `scores_col` the per-class outputs; ties go to the lower
    class, as `numpy.argmax`. Runs in the JVM (no Python UDF).

    Example:
    >>> with_predicted_class(scored, "probability", "prediction").select("prediction")
    """
    from pyspark.sql import functions

    column = functions.col(f"`{scores_col}`")
    argmax = functions.array_position(column, functions.array_max(column)) - 1
    result = scored.withColumn(prediction_col, argmax.cast("double"))
    return result if keep_scores else result.drop(scores_col)


def evaluate_frame(df, model, spec, batch_size, custom_objects, devices_per_task=None):
    """Returns the model's metrics on `df`, averaged over partitions by samples."""
    from sparkeras.data import projection
    from sparkeras.data.errors import content_error_in
    from sparkeras.session_access import job_description
    from sparkeras.worker.infer import EVALUATION_DDL, make_evaluate_task

    broadcast = _broadcast(df.sparkSession, model)
    task = make_evaluate_task(
        _plan(model, spec, batch_size, custom_objects, devices_per_task), broadcast
    )
    try:
        with job_description(df.sparkSession, "sparkeras evaluate"):
            rows = df.select(projection(spec)).mapInArrow(task, EVALUATION_DDL).collect()
    except Exception as error:  # a data error of an executor: raise it as the driver's own
        content = content_error_in(error)
        if content is None:
            raise
        raise content from None
    finally:
        broadcast.destroy()
    totals, counts = {}, {}
    for row in rows:
        totals[row.metric] = totals.get(row.metric, 0.0) + row.value * row.samples
        counts[row.metric] = counts.get(row.metric, 0) + row.samples
    return {name: totals[name] / counts[name] for name in totals if counts[name]}
