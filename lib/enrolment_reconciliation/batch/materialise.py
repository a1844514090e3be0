"""Frames a batch computes once and reads several times, without carrying their lineage.

A batch reads its inputs in one Spark job and then derives every output from them; the frames
in between are lazy local checkpoints: the first job that needs their rows computes them once
and keeps them in the executors' block managers (memory, spilling to disk), and every later
plan starts from them as a leaf. Plans stay small (the driver plans each job in milliseconds
instead of re-analysing the whole reconciliation), and a source such as the stream's Kafka
micro-batch is read once.

Losing an executor loses the rows, which fails the batch like any other infrastructure fault:
it is re-run from its input.
"""

from __future__ import annotations

from pyspark.sql import DataFrame

from enrolment_reconciliation.runtime.jvm import unpersist_checkpoint


def materialise_lazily(df: DataFrame) -> DataFrame:
    """``df`` as a leaf whose rows the first job that needs them computes once and keeps."""
    return df.localCheckpoint(eager=False)


def drop_materialised(df: DataFrame) -> None:
    """Free the rows of a frame made by :func:`materialise_lazily`."""
    unpersist_checkpoint(df)
