"""Driver of the executor device tests: `python devices_fit_child.py MODE RESULT_JSON`.

Runs in its own process (the test process holds the `spark` fixture's
SparkContext), with KERAS_BACKEND, SPARK_HOME and SPARKERAS_SHARD_LOG set by
the test, and writes what it measured as JSON.

MODE "multidevice": local[1], one synchronous worker, the same fit once on one
CPU device and once with `devices_per_task=2` (2 logical CPU devices); also
evaluate and predict on 2 devices.
MODE "gpus": local-cluster[1,2,1024] whose worker discovers 2 fake GPUs
(tests/fake_gpu_discovery.sh); tasks ask for 1 each. A fit on 2 workers and
an evaluate and a predict (the shard log shows each inference task's
CUDA_VISIBLE_DEVICES).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_HERE = os.path.dirname(os.path.abspath(__file__))


def _model():
    from shard_probe import ShardProbe, probe_model

    return probe_model(64, 32, 10, 0.05), {"ShardProbe": ShardProbe}


def _digits(spark, rows):
    from sparkeras.demo import digits_frames

    train_df, test_df = digits_frames(spark)
    return train_df.limit(rows).coalesce(1).cache(), test_df.limit(rows // 2).cache()


def multidevice(result):
    import numpy as np
    from helpers import digits_arrays

    import sparkeras
    from sparkeras import SparkModel, TrainingConfig

    spark = sparkeras.get_spark(
        "local[1]", conf={"spark.python.worker.reuse": "false", "spark.driver.host": "127.0.0.1"}
    )
    train_df, test_df = _digits(spark, 512)
    fits = {}
    for label, devices in (("one", None), ("two", 2)):
        model, custom = _model()
        spark_model = SparkModel(
            model,
            num_workers=1,
            custom_objects=custom,
            config=TrainingConfig(devices_per_task=devices),
        )
        history = spark_model.fit(train_df, epochs=2, batch_size=32, verbose=0)
        fits[label] = spark_model
        result[f"{label}_loss"] = history.history["loss"]
        result[f"{label}_summary"] = spark_model.training_summary
    weights = zip(fits["one"].model.get_weights(), fits["two"].model.get_weights(), strict=True)
    result["weight_difference"] = max(float(np.max(np.abs(a - b))) for a, b in weights)
    two = fits["two"]
    x_test, y_test = digits_arrays(test_df)
    result["evaluate"] = two.evaluate(test_df.repartition(1), batch_size=32)
    result["driver_evaluate"] = two.model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    rows = two.predict(test_df.repartition(1), batch_size=50).toPandas()
    expected = two.model.predict(np.stack(rows["features"]).astype("float32"), verbose=0)
    result["predict_difference"] = float(np.max(np.abs(np.stack(rows["probability"]) - expected)))
    result["predict_rows"] = [len(rows), len(x_test)]
    spark.stop()


def gpus(result):
    import pyspark

    import sparkeras
    from sparkeras import SparkModel

    script = os.path.join(_HERE, "fake_gpu_discovery.sh")
    spark = sparkeras.get_spark(
        "local-cluster[1,2,1024]",
        conf={
            "spark.driver.host": "127.0.0.1",
            "spark.worker.resource.gpu.amount": "2",
            "spark.worker.resource.gpu.discoveryScript": script,
            "spark.executor.resource.gpu.amount": "2",
            "spark.task.resource.gpu.amount": "1",
            "spark.executor.memory": "1g",
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s",
        },
    )
    result["worker_reuse"] = spark.sparkContext.getConf().get("spark.python.worker.reuse")
    train_df, test_df = _digits(spark, 256)
    model, custom = _model()
    spark_model = SparkModel(model, num_workers=2, custom_objects=custom)
    spark_model.fit(train_df.repartition(2), epochs=1, batch_size=32, verbose=0)
    result["summary"] = spark_model.training_summary
    result["evaluate"] = spark_model.evaluate(test_df.repartition(2))
    predicted = spark_model.predict(test_df.repartition(2)).select("prediction").collect()
    result["predicted_rows"] = len(predicted)

    result["spark"] = pyspark.__version__
    spark.stop()


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    result = {"backend": os.environ.get("KERAS_BACKEND"), "driver_pid": os.getpid()}
    {"multidevice": multidevice, "gpus": gpus}[mode](result)
    with open(path, "w") as handle:
        json.dump(result, handle)
