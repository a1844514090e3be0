"""The aggregates a sliced backfill compares with, staged once per run by slice.

A slice's computed aggregates must be compared with the table's to write only what changed.
``user_activity_agg`` is keyed by ``(activity_type, activity_id, user_id)``, so a slice's rows
are spread over the whole ring: read by key they cost one single-partition read per row (at
the `large` benchmark about 12 of a slice's 20 seconds). One token-range scan of the table,
written as Parquet partitioned by slice, costs a fraction of that; each slice then reads its
own partition (pruned by Spark) and compares by one shuffle join.

The staged copy lives under ``backfill.staging.location`` (a Hadoop path every executor
sees), one folder per scope and run; a resumed run reuses its run's copy when it was written
whole (Spark's ``_SUCCESS`` marker). The copy is a snapshot: it only decides whether a
computed row is *skipped* as unchanged, and progress only grows, so a row the stream rewrote
since is either equal to what the slice computes or older than it.

Example::

    staged = StagedAggregates(spark, cfg, scope="3f2a…", run_id="20261202T…", slices=12)
    staged.stage(ScanFilters())        # one scan, written by slice
    current = staged.slice(4)          # the table's rows of slice 4's users
    staged.drop_run()                  # when the run is finished
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, MapType, StringType, StructField, StructType

from enrolment_reconciliation.core.slices import SLICE, slice_of
from enrolment_reconciliation.io.cassandra import ScanFilters, current_aggregates
from enrolment_reconciliation.io.hadoop_fs import HadoopFileSystem, join
from enrolment_reconciliation.schemas import ACTIVITY_AGG_KEY, COMPLETED_COUNT

if TYPE_CHECKING:
    from enrolment_reconciliation.config import JobConfig

log = logging.getLogger(__name__)

# given when read: a scope without aggregate rows stages no file to infer a schema from
STAGED_SCHEMA = StructType(
    [StructField(name, StringType()) for name in ACTIVITY_AGG_KEY]
    + [
        StructField("aggregates", MapType(StringType(), DoubleType())),
        StructField(SLICE, IntegerType()),
    ]
)


class StagedAggregates:
    """The staged copy of one run's aggregates: ``<location>/<scope>/<run_id>``."""

    def __init__(
        self, spark: SparkSession, cfg: JobConfig, *, scope: str, run_id: str, slices: int
    ) -> None:
        self.spark, self.cfg, self.slices = spark, cfg, slices
        self._scope_dir = f"{cfg.backfill_staging_location.rstrip('/')}/{scope}"
        self.location = f"{self._scope_dir}/{run_id}"
        self._fs = HadoopFileSystem(spark, self.location)

    def is_whole(self) -> bool:
        """Whether a complete copy is there (a killed run may have left half of one)."""
        return self._fs.exists(f"{self.location}/_SUCCESS")

    def stage(self, filters: ScanFilters, *, drop_others: bool = True) -> bool:
        """Write the copy unless a whole one is there; returns whether it scanned the table.

        With ``drop_others``, copies of other runs of the scope are deleted first: they are
        abandoned runs' (one run of a scope at a time, under the lease).
        """
        if self.is_whole():
            return False
        if drop_others:
            self._drop_other_runs()
        held = current_aggregates(self.spark, self.cfg, filters).select(
            *ACTIVITY_AGG_KEY,
            # only the count is compared; the rest of the map belongs to other jobs
            F.create_map(F.lit(COMPLETED_COUNT), F.col("aggregates")[COMPLETED_COUNT]).alias(
                "aggregates"
            ),
            slice_of(self.slices, "user_id").alias(SLICE),
        )
        held.write.mode("overwrite").partitionBy(SLICE).parquet(self.location)
        return True

    def slice(self, index: int) -> DataFrame:
        """The staged rows of one slice's users (only that slice's files are read)."""
        return (
            self.spark.read.schema(STAGED_SCHEMA)
            .parquet(self.location)
            .where(F.col(SLICE) == index)
            .drop(SLICE)
        )

    def drop_run(self) -> None:
        """Delete this run's copy (the run is finished)."""
        self._fs.delete(self.location, recursive=True)

    def _drop_other_runs(self) -> None:
        for name in self._fs.list_names(self._scope_dir):
            if name != self.location.rsplit("/", 1)[1]:
                abandoned = join(self._scope_dir, name)
                log.info("deleting an abandoned run's staged aggregates: %s", abandoned)
                self._fs.delete(abandoned, recursive=True)
