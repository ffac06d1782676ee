"""Streaming training input: spill files, shuffling, memory, and fits with data="stream"."""

import logging
import os
import pathlib

import numpy as np
import pyarrow as pa
import pytest
from faults import FEATURES, KillWorkerMidEpoch
from helpers import dense_classifier, digits_arrays
from ps_helpers import wait_for

from sparkeras.data.spec import DataSpec, FieldSpec
from sparkeras.worker.input_stream import (
    SPILL_FOLDER,
    TrainingInput,
    remove_stale_spills,
    spill_directory,
)

WIDTH = 4
SPEC = DataSpec(
    inputs=(FieldSpec(("x",), ("features",), ("array",), (WIDTH,), (WIDTH,), "float32",
                      "model input 0"),),
    targets=(FieldSpec(("y",), ("label",), ("number",), (1,), (), "int32", "model output 0"),),
    prediction_shapes=((10,),),
)


def _batches(rows, per_batch=50):
    """Arrow batches whose label is the row number, so orders can be read back."""
    for start in range(0, rows, per_batch):
        ids = np.arange(start, min(start + per_batch, rows))
        values = np.repeat(ids, WIDTH).astype("float32")
        offsets = pa.array(np.arange(len(ids) + 1, dtype=np.int32) * WIDTH)
        yield pa.RecordBatch.from_arrays(
            [pa.ListArray.from_arrays(offsets, pa.array(values)), pa.array(ids.astype("int32"))],
            names=["x", "y"],
        )


def _epoch_orders(seed, epochs=3, rows=1000, buffer=200):
    stream = TrainingInput(_batches(rows), SPEC, batch_size=10, seed=seed, shuffle_buffer=buffer)
    orders = []
    try:
        for epoch in range(epochs):
            stream.start_epoch(epoch)
            labels = []
            while (chunk := stream.next_rows(70)) is not None:
                labels.extend(chunk[1].tolist())
            orders.append(labels)
        paths = stream.spill_paths
        assert os.path.exists(paths[0])
    finally:
        stream.close()
    assert not any(os.path.exists(path) for path in paths)
    return orders


def test_same_seed_gives_the_same_shuffle(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_LOCAL_DIRS", str(tmp_path))
    first, again, other = _epoch_orders(1), _epoch_orders(1), _epoch_orders(2)
    assert first == again
    assert first != other
    for order in first:
        assert sorted(order) == list(range(1000))  # every row once per epoch
        assert order != list(range(1000))
    assert first[1] != first[2]  # each epoch its own order
    # Rows move beyond their Arrow batch: the buffer mixes batches.
    assert any(abs(label - position) > 50 for position, label in enumerate(first[1]))


def test_stale_spill_of_a_dead_process_is_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_LOCAL_DIRS", str(tmp_path))
    folder = pathlib.Path(spill_directory())
    dead = 2**22 + 12345  # above the default pid_max: no such process
    stale = folder / f"{dead}-abc-train.arrow"
    stale.write_bytes(b"x")
    live = folder / f"{os.getppid()}-abc-train.arrow"
    live.write_bytes(b"x")
    assert remove_stale_spills(str(folder)) == 1
    assert not stale.exists() and live.exists()


def test_drain_counts_the_partition_and_keeps_memory_flat(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_LOCAL_DIRS", str(tmp_path))
    stream = TrainingInput(_batches(5000), SPEC, batch_size=10, seed=0, shuffle_buffer=100)
    try:
        stream.drain()
        assert stream.complete and stream.num_samples == 5000
        assert stream.stats.rows_read == 5000
        assert stream.stats.bytes_spilled >= 5000 * (WIDTH * 4 + 4)
    finally:
        stream.close()


# Fits on real Spark ------------------------------------------------------------------


def _spill_files(spark):
    """Spill files in the folder a Spark task of this session uses (under its local dirs)."""
    folder = spark.sparkContext.parallelize([0], 1).map(lambda _: spill_directory()).collect()[0]
    assert SPILL_FOLDER in folder and "blockmgr" in folder  # Spark's local dirs, not /tmp
    return sorted(pathlib.Path(folder).glob("*"))


def _wait_for_no_spill_files(spark, timeout_s=60):
    """Waits until the tasks' cleanup ran (a failed task may end after the driver's error)."""
    wait_for(lambda: not _spill_files(spark), timeout_s=timeout_s, interval_s=0.1)
    return _spill_files(spark)


@pytest.fixture(scope="module")
def two_partitions(digits):
    """The digits training frame in 2 partitions, and the test frame."""
    train, test = digits
    return train.repartition(2).cache(), test


def _fit(frame, data, validation=None, frequency="epoch", epochs=8, buffer=256, seed=0):
    from sparkeras import SparkModel, TrainingConfig

    spark_model = SparkModel(
        dense_classifier(seed=seed), frequency=frequency, num_workers=2,
        config=TrainingConfig(data=data, shuffle_buffer=buffer, seed=seed),
    )
    history = spark_model.fit(frame, epochs=epochs, batch_size=16, validation_data=validation,
                              verbose=0)
    return spark_model, history


@pytest.mark.spark
def test_stream_accuracy_matches_memory_and_cleans_up(spark, two_partitions):
    train, test = two_partitions
    x_test, y_test = digits_arrays(test)
    accuracy = {}
    for data in ("memory", "stream"):
        spark_model, _ = _fit(train, data)
        assert {row["data"] for row in spark_model.training_summary} == {data}
        accuracy[data] = spark_model.model.evaluate(x_test, y_test, verbose=0,
                                                    return_dict=True)["accuracy"]
    summary = spark_model.training_summary
    assert sum(row["samples"] for row in summary) == train.count()
    assert all(row["bytes_spilled"] > 0 and row["rows_read"] == row["samples"] for row in summary)
    assert all(row["peak_rss_anon_mb"] > 0 and row["train_s"] > 0 for row in summary)
    print(f"digits accuracy: {accuracy}")
    assert abs(accuracy["stream"] - accuracy["memory"]) <= 0.01, accuracy
    assert _wait_for_no_spill_files(spark) == []


@pytest.mark.spark
def test_stream_with_validation_and_batch_frequency(spark, two_partitions):
    train, test = two_partitions
    spark_model, history = _fit(train, "stream", validation=test, frequency="batch", epochs=2)
    assert len(history.history["val_accuracy"]) == 2
    assert history.history["val_accuracy"][-1] > 0.8
    summary = spark_model.training_summary
    assert sum(row["validation_samples"] for row in summary) == test.count()
    assert sum(row["samples"] for row in summary) == train.count()
    assert {row["data"] for row in summary} == {"stream"}
    assert _wait_for_no_spill_files(spark) == []


@pytest.mark.spark
def test_spill_files_are_removed_after_a_failed_task(spark):
    from pyspark.sql import functions as F

    from sparkeras.data import DataContentError

    rows = 4000
    frame = spark.range(rows, numPartitions=2).select(
        F.when(F.col("id") % 2000 < 1990, F.array(*[F.rand(i) for i in range(FEATURES)]))
        .alias("features"),
        (F.col("id") % 10).cast("int").alias("label"),
    )
    from sparkeras import SparkModel, TrainingConfig

    spark_model = SparkModel(dense_classifier(inputs=FEATURES), num_workers=2,
                             config=TrainingConfig(data="stream", shuffle_buffer=500))
    with pytest.raises(DataContentError, match="null"):
        spark_model.fit(frame, epochs=2, batch_size=32, verbose=0)
    assert _wait_for_no_spill_files(spark) == []


@pytest.mark.spark
def test_peak_memory_does_not_grow_with_the_partition(spark):
    """Peak RssAnon of N and 6N rows x 784: the partition grows, the streaming worker does not.

    Arrow batches and buffer of 5,000 rows (16 MB each) make the shuffle
    pool, its permuted copy and the chunks larger than glibc's initial
    memory-map threshold: before `release_large_allocations` their freed
    space stayed in the heap and the peak grew about 1x the data read.
    """
    from pyspark.sql import functions as F

    from sparkeras import SparkModel, TrainingConfig

    width, small, batch_rows = 784, 20_000, 5000
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))
    peaks = {}
    try:
        for rows in (small, 6 * small):
            frame = spark.range(rows, numPartitions=2).select(
                F.array_repeat(F.rand(0).cast("float"), width).alias("features"),
                (F.col("id") % 10).cast("int").alias("label"),
            )
            spark_model = SparkModel(dense_classifier(inputs=width), num_workers=2,
                                     config=TrainingConfig(data="stream",
                                                           shuffle_buffer=batch_rows))
            spark_model.fit(frame, epochs=2, batch_size=100, verbose=0)
            summary = spark_model.training_summary
            assert sum(row["rows_read"] for row in summary) == rows
            peaks[rows] = max(row["peak_rss_anon_mb"] for row in summary)
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    partition_growth_mb = 5 * small // 2 * width * 4 / 2**20  # 150 MB more per partition
    growth = peaks[6 * small] - peaks[small]
    print(f"peak RssAnon {peaks} MB; growth {growth:.0f} MB for {partition_growth_mb:.0f} MB "
          "more data per partition")
    # Holding the partition (data="memory") grows by about 3x the data, and
    # streaming did by about 0.8x before the fixed memory-map threshold; what
    # is left (Keras' first chunks, about 35 MB) does not grow with the data.
    assert growth < 0.4 * partition_growth_mb, peaks
    assert _wait_for_no_spill_files(spark) == []


@pytest.mark.spark
def test_killed_streaming_worker_is_relaunched(spark, caplog, monkeypatch):
    from pyspark.sql import functions as F

    from sparkeras import SparkModel, TrainingConfig, progress

    monkeypatch.setattr(progress, "REPORT_INTERVAL_S", 0.05)
    rows, batch = 16_000, 32
    frame = spark.range(rows, numPartitions=2).select(
        F.array(*[F.rand(i) for i in range(FEATURES)]).cast("array<float>").alias("features"),
        (F.col("id") % 10).cast("int").alias("label"),
    ).cache()
    spark_model = SparkModel(dense_classifier(inputs=FEATURES), num_workers=2,
                             config=TrainingConfig(data="stream", shuffle_buffer=1000))
    killer = KillWorkerMidEpoch(spark_model, steps_per_epoch=rows // 2 // batch)
    with caplog.at_level(logging.WARNING, logger="sparkeras"):
        history = spark_model.fit(frame, epochs=3, batch_size=batch,
                                  callbacks=[killer.callback], verbose=0)
    assert killer.killed is not None, "no progress report arrived during epoch 2"
    assert len(history.history["loss"]) == 3
    resumes = [r.getMessage() for r in caplog.records if "resuming at epoch" in r.getMessage()]
    assert resumes and "resuming at epoch 2" in resumes[0], resumes
    assert all(row["launch"] == 1 and row["data"] == "stream"
               for row in spark_model.training_summary)
    assert sum(row["samples"] for row in spark_model.training_summary) == rows
    assert _wait_for_no_spill_files(spark) == []
    frame.unpersist()


def test_bad_data_options_are_refused():
    from sparkeras import TrainingConfig

    with pytest.raises(ValueError, match="Unknown data mode.*Received: data='fast'"):
        TrainingConfig(data="fast")
    with pytest.raises(ValueError, match="Received: shuffle_buffer=0"):
        TrainingConfig(shuffle_buffer=0)
