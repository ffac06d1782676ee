"""How a fit's rows reach its workers: one partition per worker, no shuffle where Spark allows.

Driver-side module. A fit runs one training task per worker, so the frame
it trains on needs exactly `num_workers` partitions. The training job is not
a barrier stage (the coordinator enforces the gang start itself, see
docs/data-path.md), so Spark lets it read a frame through `coalesce`: each
worker gets whole partitions of the frame as they are, and no row crosses
the network before training. Only two cases still shuffle, once per fit:
a frame with fewer partitions than workers (a partition cannot be split
without one), and a Spark Connect session (its client cannot tell a frame's
partition count without running a job).

Validation rows travel in the same tasks, marked by `SPLIT_COLUMN`: the
validation frame is coalesced to one partition and appended after the
training partitions, so the training rows are never reshuffled for it.
"""

from sparkeras import session_access
from sparkeras.common.plan import SPLIT_COLUMN


def worker_frame(training, num_workers, validation=None):
    """The frame the training job reads: `num_workers` partitions, shuffled only if it must be.

    Args:
        training: The projected training DataFrame.
        num_workers: Training tasks of the fit.
        validation: The projected validation DataFrame, or None.

    Returns:
        (frame, how): the frame, and how its partitions were made: "as is",
        "coalesce" (whole partitions grouped, no shuffle) or "repartition"
        (one shuffle: fewer partitions than workers, or Spark Connect).

    Example:
    >>> frame, how = worker_frame(train_df.select(projection(spec)), 2)
    >>> how, frame.rdd.getNumPartitions()
    ('coalesce', 2)
    """
    from pyspark.sql import functions

    frame = training
    if validation is not None:
        frame = training.withColumn(SPLIT_COLUMN, functions.lit(False)).unionByName(
            validation.withColumn(SPLIT_COLUMN, functions.lit(True)).coalesce(1)
        )
    partitions = session_access.num_partitions(frame)
    if partitions == num_workers:
        return frame, "as is"
    if partitions is not None and partitions > num_workers:
        grouped = frame.coalesce(num_workers)
        # Spark's coalescer may leave fewer groups than asked (it drops empty ones).
        if session_access.num_partitions(grouped) == num_workers:
            return grouped, "coalesce"
    return frame.repartition(num_workers), "repartition"
