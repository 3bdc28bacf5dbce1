"""Cutting a frame's lineage: a reliable checkpoint when a checkpoint directory is set, else a
local one.

Identity work is iterative (link building, tier after tier, component rounds), and a plan
that keeps its whole lineage grows with every step; materialising cuts it. A reliable
checkpoint survives a lost executor, so it is taken whenever the SparkContext has a
checkpoint directory; without one (or on Spark Connect, which has no SparkContext) a local
checkpoint is the only cut there is.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession


def checkpoint_dir(spark: SparkSession) -> str | None:
    """The SparkContext's checkpoint directory; None when unset or on Spark Connect."""
    try:
        return spark.sparkContext.getCheckpointDir()
    except Exception:  # Spark Connect: no SparkContext; fall back to local checkpoints
        return None


def cut(df: DataFrame, *, reliable: bool | None = None) -> DataFrame:
    """``df`` materialised eagerly (one job), with a plan that no longer holds its lineage.

    ``reliable``: None picks a reliable checkpoint when the session has a checkpoint
    directory (see :func:`checkpoint_dir`), else a local one; True or False forces either.
    """
    if reliable is None:
        reliable = checkpoint_dir(df.sparkSession) is not None
    return df.checkpoint(eager=True) if reliable else df.localCheckpoint(eager=True)
