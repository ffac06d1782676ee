"""Asynchronous and hogwild training on real Spark reach synchronous accuracy."""

import pytest
from helpers import dense_classifier, digits_arrays

pytestmark = pytest.mark.spark

EPOCHS = 6


@pytest.fixture(scope="module")
def two_partitions(digits):
    """The digits training frame in 2 partitions, and the test rows as arrays."""
    train_df, test_df = digits
    return train_df.repartition(2).cache(), digits_arrays(test_df)


def _fit(train_df, mode, frequency):
    from sparkeras import SparkModel

    spark_model = SparkModel(dense_classifier(), mode=mode, frequency=frequency, num_workers=2)
    history = spark_model.fit(train_df, epochs=EPOCHS, batch_size=32, verbose=0)
    return spark_model, history


@pytest.fixture(scope="module")
def sync_accuracy(two_partitions):
    train_df, (x_test, y_test) = two_partitions
    spark_model, _ = _fit(train_df, "synchronous", "epoch")
    return spark_model.model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]


@pytest.mark.parametrize(
    "mode, frequency",
    [("asynchronous", "epoch"), ("hogwild", "epoch"), ("asynchronous", "batch"), ("hogwild", 4)],
)
def test_async_modes_reach_sync_accuracy(two_partitions, sync_accuracy, mode, frequency):
    train_df, (x_test, y_test) = two_partitions
    spark_model, history = _fit(train_df, mode, frequency)
    accuracy = spark_model.model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
    assert accuracy >= sync_accuracy - 0.03, (mode, frequency, accuracy, sync_accuracy)
    assert len(history.history["loss"]) == EPOCHS
    assert len(history.history["accuracy"]) == EPOCHS
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert sum(row["samples"] for row in spark_model.training_summary) == train_df.count()
