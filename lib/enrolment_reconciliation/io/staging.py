"""What a sliced backfill reads once per run and then slice by slice: its users and aggregates.

**Users.** A run divides the users in scope into slices by a hash of ``userid``; finding them
takes a pass over ``user_enrolments`` (or the users file). The pass is written once per run as
Parquet partitioned by slice, and each slice reads its own partition (pruned by Spark): the
run holds no list of users in memory, and a resumed run reads the copy instead of passing over
the table again (docs/benchmarks.md has what that saves).

**Aggregates.** A slice's computed aggregates must be compared with the table's to write only
what changed. ``user_activity_agg`` is keyed by ``(activity_type, activity_id, user_id)``, so a
slice's rows are spread over the whole ring: read by key they cost one single-partition read per
row, most of a slice's time at scale (docs/benchmarks.md). One token-range scan of the
table, written by slice, costs a fraction of that; each slice then compares by one shuffle join.
The copy is a snapshot: it only decides whether a computed row is *skipped* as unchanged, and
progress only grows, so a row the stream rewrote since is either equal to what the slice
computes or older than it.

Both live under ``backfill.staging.location`` (a Hadoop path every executor sees), one folder
per scope and run (``<scope>/<run>/users``, ``<scope>/<run>/aggregates``); a resumed run reuses
its run's copies when they were written whole (Spark's ``_SUCCESS`` marker).

Example::

    staged = RunStaging(spark, cfg.cassandra, "/state/backfill-staging", scope="3f2a…",
                        run_id="20261202T…", slices=12)
    if not staged.has_users():
        staged.stage_users(scan_enrolment_users(spark, cfg.cassandra, filters))
    staged.stage_aggregates(ScanFilters())   # one scan, written by slice
    users, current = staged.users(4), staged.aggregates(4)
    staged.drop_run()                        # when the run is finished
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, MapType, StringType, StructField, StructType

from enrolment_reconciliation.core.schemas import ACTIVITY_AGG_KEY, COMPLETED_COUNT
from enrolment_reconciliation.core.slices import SLICE, slice_of, with_slice
from enrolment_reconciliation.io.cassandra import ScanFilters, current_aggregates
from enrolment_reconciliation.io.filesystem import HadoopFileSystem, join

if TYPE_CHECKING:
    from enrolment_reconciliation.runtime.config import CassandraSettings

log = logging.getLogger(__name__)

# given when read: a scope without rows stages no file to infer a schema from
STAGED_AGGREGATES_SCHEMA = StructType(
    [StructField(name, StringType()) for name in ACTIVITY_AGG_KEY]
    + [
        StructField("aggregates", MapType(StringType(), DoubleType())),
        StructField(SLICE, IntegerType()),
    ]
)
STAGED_USERS_SCHEMA = StructType(
    [StructField("userid", StringType()), StructField(SLICE, IntegerType())]
)
USERS, AGGREGATES = "users", "aggregates"


class RunStaging:
    """The staged copies of one run: ``<location>/<scope>/<run_id>/{users,aggregates}``."""

    def __init__(
        self,
        spark: SparkSession,
        cassandra: CassandraSettings,
        location: str,
        *,
        scope: str,
        run_id: str,
        slices: int,
    ) -> None:
        self.spark, self.cassandra, self.slices = spark, cassandra, slices
        self._scope_dir = join(location, scope)
        self.location = join(self._scope_dir, run_id)
        self._fs = HadoopFileSystem(spark, self.location)

    def is_whole(self, part: str) -> bool:
        """Whether a complete copy of ``part`` is there (a killed run may have left half of one)."""
        return self._fs.exists(join(join(self.location, part), "_SUCCESS"))

    def drop_other_runs(self) -> None:
        """Delete the copies of other runs of the scope: abandoned runs' (one run of a scope at
        a time, under the lease)."""
        for name in self._fs.list_names(self._scope_dir):
            if name != self.location.rsplit("/", 1)[1]:
                abandoned = join(self._scope_dir, name)
                log.info("deleting an abandoned run's staged copies: %s", abandoned)
                self._fs.delete(abandoned, recursive=True)

    def has_users(self) -> bool:
        """Whether a whole copy of the run's users is there (a resumed run's)."""
        return self.is_whole(USERS)

    def stage_users(self, users: DataFrame) -> None:
        """Write every user in scope (``users``: one ``userid`` column) with its slice."""
        with_slice(users, self.slices).write.mode("overwrite").partitionBy(SLICE).parquet(
            join(self.location, USERS)
        )

    def users(self, index: int) -> DataFrame:
        """The users of one slice (only that slice's files are read)."""
        return self._read(USERS, STAGED_USERS_SCHEMA, index)

    def user_count(self) -> int:
        """How many users the run has (from the Parquet footers)."""
        return self._read(USERS, STAGED_USERS_SCHEMA, None).count()

    def stage_aggregates(self, filters: ScanFilters) -> bool:
        """Write the table's aggregates in scope by slice unless a whole copy is there; returns
        whether it scanned the table."""
        if self.is_whole(AGGREGATES):
            return False
        held = current_aggregates(self.spark, self.cassandra, filters).select(
            *ACTIVITY_AGG_KEY,
            # only the count is compared; the rest of the map belongs to other jobs
            F.create_map(F.lit(COMPLETED_COUNT), F.col("aggregates")[COMPLETED_COUNT]).alias(
                "aggregates"
            ),
            slice_of(self.slices, "user_id").alias(SLICE),
        )
        held.write.mode("overwrite").partitionBy(SLICE).parquet(join(self.location, AGGREGATES))
        return True

    def aggregates(self, index: int) -> DataFrame:
        """The staged aggregate rows of one slice's users."""
        return self._read(AGGREGATES, STAGED_AGGREGATES_SCHEMA, index)

    def drop_run(self) -> None:
        """Delete this run's copies (the run is finished)."""
        self._fs.delete(self.location, recursive=True)

    def _read(self, part: str, schema: StructType, index: int | None) -> DataFrame:
        rows = self.spark.read.schema(schema).parquet(join(self.location, part))
        return rows if index is None else rows.where(F.col(SLICE) == index).drop(SLICE)
