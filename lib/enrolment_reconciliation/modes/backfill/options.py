"""What a backfill reconciles and how: the ``backfill`` command line as one value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from enrolment_reconciliation.io.cassandra import ScanFilters
from enrolment_reconciliation.io.filesystem import HadoopFileSystem
from enrolment_reconciliation.runtime.config import ConfigError


@dataclass(frozen=True)
class BackfillOptions:
    """What to reconcile and how (the command line of ``backfill``).

    Example::

        BackfillOptions(courses=("do_1",), dry_run="/tmp/report")
    """

    courses: tuple[str, ...] = ()
    batches: tuple[str, ...] = ()
    users_file: str | None = None
    dry_run: str | None = None  # a folder: write the report there, touch nothing
    summary_file: str | None = None
    restart: bool = False  # start over even if an unfinished run of this scope could resume
    # also send a certificate request to each completed enrolment that has none (core.repairs)
    repair_certificates: bool = False

    def filters(self, spark: SparkSession) -> ScanFilters:
        """The scans' filters; a users file is read by Spark (any Hadoop path the cluster sees),
        so a file of millions of ids never passes through the driver."""
        users = None
        if self.users_file:
            if not HadoopFileSystem(spark, self.users_file).is_file(self.users_file):
                raise ConfigError(f"--users-file {self.users_file}: no such file")
            users = (
                spark.read.text(self.users_file)
                .select(F.trim("value").alias("userid"))
                .where(F.col("userid") != "")
                .distinct()
            )
        return ScanFilters(courses=self.courses, batches=self.batches, users=users)

    def describe(self) -> dict[str, Any]:
        return {
            "courses": list(self.courses) or "all",
            "batches": list(self.batches) or "all",
            "usersFile": self.users_file or "all",
            "dryRun": self.dry_run is not None,
            "repairCertificates": self.repair_certificates,
        }
