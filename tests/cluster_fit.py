"""Driver of the cluster fit test: `python cluster_fit.py MASTER_URL EPOCHS RESULT_JSON`.

Trains the digits MLP with SparkModel on the standalone cluster and writes
the test accuracy, the training summary and, per worker, the id of the
executor JVM whose Python daemon (the worker's `parent_pid`) ran it.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def executor_id(daemon_pid):
    """The `--executor-id` of the JVM that started this Python daemon (same machine)."""
    with open(f"/proc/{daemon_pid}/stat") as handle:
        jvm_pid = int(handle.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{jvm_pid}/cmdline") as handle:
        arguments = handle.read().split("\0")
    return arguments[arguments.index("--executor-id") + 1]


def main(master_url, epochs, result_path):
    from helpers import dense_classifier

    import sparkeras
    from sparkeras.demo import digits_frames

    spark = sparkeras.get_spark(
        master_url,
        app_name="sparkeras cluster fit test",
        conf={
            "spark.driver.host": "127.0.0.1",
            "spark.executor.cores": "1",
            "spark.executor.memory": "512m",
            "spark.cores.max": "2",
            # Wait for both executors before the first job: the barrier stage needs 2 slots.
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s",
        },
    )
    train_df, test_df = digits_frames(spark)
    spark_model = sparkeras.SparkModel(dense_classifier(), num_workers=2)
    spark_model.fit(train_df, epochs=epochs, batch_size=32, verbose=0)
    summary = spark_model.training_summary
    result = {
        "accuracy": spark_model.evaluate(test_df)["accuracy"],
        "summary": summary,
        "executor_ids": [executor_id(row["parent_pid"]) for row in summary],
    }
    spark.stop()
    with open(result_path, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
