"""Inference on executors: predict as an Arrow UDF, evaluate per partition.

Executor-side module. The model arrives once per job as a Spark broadcast of
`.keras` bytes and is cached per Python worker under the plan's `model_key`.
"""

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

EVALUATION_DDL = "metric string, value double, samples long"


def _load(plan, model_broadcast):
    """The cached model of this worker, on the task's devices, with its distribution.

    Returns:
        `(model, distribution, shards)`: run the model under
        `parallel.scope(distribution)`; `shards` is its number of devices.
    """
    from sparkeras.common.model_io import cached_model, model_from_bytes
    from sparkeras.worker import parallel
    from sparkeras.worker.task_setup import set_up_task

    setup = set_up_task(plan.backend, getattr(plan, "devices_per_task", None))

    def load():
        names, distribution = setup.replicas()
        with parallel.scope(distribution):
            model = model_from_bytes(model_broadcast.value, plan.custom_objects)
        return model, distribution, len(names)

    return cached_model(plan.model_key, load)


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
    return [np.concatenate(column) for column in zip(*parts, strict=True)]


def make_predict_function(plan, model_broadcast, output_names):
    """Builds the Arrow UDF body (iterator of batches) that predicts.

    Spark hands it only the projected feature columns, as Arrow arrays, and
    appends what it yields to the rows itself: every other column stays in
    the JVM, in order. One model output gives one array per batch; several
    give a struct array with one field per output.

    Its type hints (iterator of arrays, or of tuples of arrays for several
    feature columns) tell Spark it is a scalar-iterator Arrow UDF.

    Example:
    >>> function = make_predict_function(plan, broadcast, ["prediction"])
    >>> arrow_udf(function, "array<float>")(*projection(spec))
    """

    def predict_batches(batches):
        from sparkeras.data import batches_to_arrays, predictions_to_arrow
        from sparkeras.worker import parallel

        model, distribution, shards = _load(plan, model_broadcast)
        for arrays in batches:
            arrays = list(arrays) if isinstance(arrays, (list, tuple)) else [arrays]
            batch = pa.RecordBatch.from_arrays(arrays, names=list(plan.data.columns))
            x, _ = batches_to_arrays([batch], plan.data)
            if shards > 1:  # predict_on_batch would not split the batch over the devices
                with parallel.scope(distribution):
                    predictions = parallel.predict_arrays(model, x, plan.batch_size, shards)
            else:
                predictions = predict_arrays(model, x, batch.num_rows, plan.batch_size)
            columns = predictions_to_arrow(
                predictions if len(predictions) > 1 else predictions[0], plan.data
            )
            if len(columns) == 1:
                yield columns[0]
            else:
                yield pa.StructArray.from_arrays(columns, names=list(output_names))

    batches_hint = Iterator[pa.Array]
    if len(plan.data.columns) > 1:
        batches_hint = Iterator[tuple[pa.Array, ...]]
    predict_batches.__annotations__ = {"batches": batches_hint, "return": Iterator[pa.Array]}
    return predict_batches


def make_evaluate_task(plan, model_broadcast):
    """Builds the `mapInArrow` function that evaluates each partition.

    It yields, per non-empty partition, one row per metric with the
    partition's sample count, for the driver to average by samples.

    Example:
    >>> rows = df.select(projection(spec)).mapInArrow(task, EVALUATION_DDL).collect()
    """

    def evaluate_partition(batches):
        from sparkeras.data import batches_to_arrays
        from sparkeras.worker import parallel

        batches = [batch for batch in batches if batch.num_rows]
        if not batches:
            return
        model, distribution, shards = _load(plan, model_broadcast)
        x, y = batches_to_arrays(batches, plan.data)
        with parallel.scope(distribution):
            logs = parallel.evaluate_arrays(model, x, y, plan.batch_size, shards)
        samples = sum(batch.num_rows for batch in batches)
        yield pa.RecordBatch.from_pylist(
            [{"metric": name, "value": float(value), "samples": samples}
             for name, value in logs.items()],
            schema=pa.schema(
                [("metric", pa.string()), ("value", pa.float64()), ("samples", pa.int64())]
            ),
        )

    return evaluate_partition
