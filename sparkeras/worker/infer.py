"""Inference tasks: predict and evaluate in Arrow batches on executors.

Executor-side module. The model arrives once per job as a Spark broadcast of
`.keras` bytes and is cached per Python worker under the plan's `model_key`.
"""

import numpy as np
import pyarrow as pa

EVALUATION_DDL = "metric string, value double, samples long"


def _load(plan, model_broadcast):
    from pyspark import TaskContext

    from sparkeras.worker.model_io import cached_model, model_from_bytes
    from sparkeras.worker.runtime import prepare_process

    prepare_process(plan.backend, TaskContext.get().cpus())
    return cached_model(
        plan.model_key, lambda: model_from_bytes(model_broadcast.value, plan.custom_objects)
    )


def _slice(x, start, stop):
    if isinstance(x, list):
        return [part[start:stop] for part in x]
    return x[start:stop]


def predict_arrays(model, x, num_rows, batch_size):
    """Runs `model.predict_on_batch` over `x` in slices of `batch_size` rows.

    Returns:
        One array per model output (a list even for one output).

    Example:
    >>> (probabilities,) = predict_arrays(model, x, len(x), 1024)
    """
    parts = []
    for start in range(0, num_rows, batch_size):
        out = model.predict_on_batch(_slice(x, start, start + batch_size))
        parts.append([np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])])
    return [np.concatenate(column) for column in zip(*parts)]


def make_predict_task(plan, model_broadcast, output_names):
    """Builds the `mapInArrow` function that appends prediction columns.

    Every input column listed in `plan.keep_columns` passes through unchanged
    and in order; the internal feature columns are dropped.

    Example:
    >>> task = make_predict_task(plan, broadcast, ["prediction"])
    >>> df.select("*", *projection(spec)).mapInArrow(task, output_schema)
    """

    def predict_partition(batches):
        from sparkeras.data import batches_to_arrays, predictions_to_arrow

        model = _load(plan, model_broadcast)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            x, _ = batches_to_arrays([batch], plan.data)
            predictions = predict_arrays(model, x, batch.num_rows, plan.batch_size)
            columns = [batch.column(name) for name in plan.keep_columns]
            columns += predictions_to_arrow(
                predictions if len(predictions) > 1 else predictions[0], plan.data
            )
            yield pa.RecordBatch.from_arrays(columns, names=[*plan.keep_columns, *output_names])

    return predict_partition


def make_evaluate_task(plan, model_broadcast):
    """Builds the `mapInArrow` function that evaluates each partition.

    It yields, per non-empty partition, one row per metric with the
    partition's sample count, for the driver to average by samples.

    Example:
    >>> rows = df.select(projection(spec)).mapInArrow(task, EVALUATION_DDL).collect()
    """

    def evaluate_partition(batches):
        from sparkeras.data import batches_to_arrays

        batches = [batch for batch in batches if batch.num_rows]
        if not batches:
            return
        model = _load(plan, model_broadcast)
        x, y = batches_to_arrays(batches, plan.data)
        logs = model.evaluate(x, y, batch_size=plan.batch_size, verbose=0, return_dict=True)
        samples = sum(batch.num_rows for batch in batches)
        yield pa.RecordBatch.from_pylist(
            [{"metric": name, "value": float(value), "samples": samples}
             for name, value in logs.items()],
            schema=pa.schema(
                [("metric", pa.string()), ("value", pa.float64()), ("samples", pa.int64())]
            ),
        )

    return evaluate_partition
