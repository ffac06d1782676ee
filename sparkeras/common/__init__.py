"""What the driver and the executors both use: task plans, model bytes, optimizer state.

Neutral package: its modules import no driver-only module (no SparkSession)
and no executor-only one, so either side may import them.
"""
