"""The dry run's sink: what a backfill would change, written to a folder instead of the stores.

``DIR/summary.json``  the counts (scanned, changed, unchanged, newly completed, retired, missing
                      structure, failed) and every counter of the run;
``DIR/changes.csv``   one line per enrolment that would change: status, progress, completedon
                      before and after;
``DIR/<kind>-events.jsonl``  the AUDIT, certificate and failed events that would be published;
``DIR/certificate-repairs.jsonl``  with ``--repair-certificates``, the certificate requests a
                      repair would send;
``DIR/progress.png``  the change per course (with the ``charts`` extra: matplotlib; without
                      it the summary says the chart was skipped).

Rows are written by Spark (one file each), so the driver never holds them; only the per-course
figures of the chart are collected (bounded by the catalogue).
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from enrolment_reconciliation.batch.pipeline import BatchResult
from enrolment_reconciliation.core.counters import Counter, Counts
from enrolment_reconciliation.core.schemas import AUDIT, CERTIFICATE
from enrolment_reconciliation.io.filesystem import HadoopFileSystem, join

CHANGE_COLUMNS = [
    "userid",
    "courseid",
    "batchid",
    "statusBefore",
    "status",
    "progressBefore",
    "progress",
    "completedonBefore",
    "completedon",
]
CHART_COURSES = 40
log = logging.getLogger("enrolment_reconciliation.backfill")


def backfill_summary(counts: Counts) -> dict[str, int]:
    """The headline figures of a backfill run (real or dry), from its counters."""
    return {
        "scanned": counts.get(Counter.ENROLMENTS_SCANNED, 0),
        "changed": counts.get(Counter.ENROLMENT_UPDATES, 0),
        "unchanged": counts.get(Counter.ENROLMENTS_UNCHANGED, 0),
        "newlyCompleted": counts.get(Counter.ENROLMENTS_COMPLETED, 0),
        "retired": counts.get(Counter.RETIRED, 0),
        "missingStructure": counts.get(Counter.MISSING_STRUCTURE, 0),
        "failed": counts.get(Counter.FAILED_EVENTS, 0),
        "aggregatesChanged": counts.get(Counter.AGGREGATE_ROWS, 0),
        "aggregatesUnchanged": counts.get(Counter.AGGREGATES_UNCHANGED, 0),
        "certificateRepairs": counts.get(Counter.CERT_REPAIRS, 0),
    }


def _write_single_file(spark: SparkSession, df: DataFrame, target: str, fmt: str) -> None:
    """Write ``df`` as exactly one file at ``target`` (through Hadoop's FileSystem, so DIR may
    be on HDFS or an object store when the job runs on a cluster)."""
    fs = HadoopFileSystem(spark, target)
    staging = f"{target}.parts"
    writer = df.coalesce(1).write.mode("overwrite")
    if fmt == "csv":
        writer.option("header", "true").csv(staging)
    else:
        writer.text(staging)
    parts = [name for name in fs.list_names(staging) if name.startswith("part-")]
    fs.delete(target)
    if parts:
        fs.rename(join(staging, parts[0]), target)
    else:  # no rows: an empty file (with the header for CSV)
        fs.write_bytes(target, (",".join(df.columns) + "\n").encode() if fmt == "csv" else b"")
    fs.delete(staging, recursive=True)


def _per_course(batch: BatchResult) -> list[dict[str, Any]]:
    changes = batch.outputs.enrolment_changes
    rows = (
        changes.groupBy("courseid")
        .agg(
            F.count(F.lit(1)).alias("enrolments"),
            F.sum(F.col("changed").cast("int")).alias("changed"),
            F.sum(F.col("newlyCompleted").cast("int")).alias("newlyCompleted"),
            F.sum(F.coalesce("progressBefore", F.lit(0))).alias("progressBefore"),
            F.sum("progress").alias("progressAfter"),
        )
        .orderBy(F.desc("changed"), "courseid")
        .collect()
    )
    return [r.asDict() for r in rows]


CHART_SKIPPED = (
    "skipped: matplotlib is not installed (pip install 'enrolment-reconciliation[charts]')"
)


def _chart(per_course: list[dict[str, Any]]) -> bytes | None:
    """The PNG of the change per course; None without matplotlib (an optional extra)."""
    try:
        import matplotlib
    except ImportError:
        log.warning("dry-run chart %s", CHART_SKIPPED)
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = per_course[:CHART_COURSES]
    names = [r["courseid"] for r in shown][::-1]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12, max(3.0, 0.35 * len(shown) + 1.5)), sharey=True
    )
    y = range(len(names))
    left.barh(y, [r["changed"] for r in shown][::-1], color="#4c72b0", label="would change")
    left.barh(
        y, [r["newlyCompleted"] for r in shown][::-1], color="#55a868", label="would complete"
    )
    left.set_yticks(list(y), names, fontsize=8)
    left.set_xlabel("enrolments")
    left.legend(loc="best", framealpha=0.9)
    left.set_title("Enrolments per course")
    before = [r["progressBefore"] / max(r["enrolments"], 1) for r in shown][::-1]
    after = [r["progressAfter"] / max(r["enrolments"], 1) for r in shown][::-1]
    right.barh([i + 0.2 for i in y], before, height=0.4, color="#c0c0c0", label="before")
    right.barh([i - 0.2 for i in y], after, height=0.4, color="#4c72b0", label="after")
    right.set_xlabel("mean progress (completed leaves)")
    right.legend(loc="best", framealpha=0.9)
    right.set_title("Progress per enrolment")
    more = len(per_course) - len(shown)
    fig.suptitle(
        "Backfill dry run: change per course"
        + (f" (top {len(shown)}, {more} more)" if more else "")
    )
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    return png.getvalue()


class DryRunReport:
    """The report of a dry run in one or more slices: each slice's rows are written by Spark
    into parts under ``DIR/.parts`` as it finishes, and :meth:`finish` joins them into one file
    each, with the summary and the chart of the whole run."""

    KINDS = ("changes", "audit", "certificate", "failed")
    REPAIRS = "certificate-repairs"

    def __init__(self, spark: SparkSession, directory: str, *, repairs: bool = False) -> None:
        self._spark = spark
        self._kinds = self.KINDS + ((self.REPAIRS,) if repairs else ())
        self.directory = directory  # any Hadoop path the cluster sees: a local one, hdfs://, ...
        self._fs = HadoopFileSystem(spark, directory)
        self._fs.mkdirs(directory)
        self._parts = join(directory, ".parts")
        self._per_course: dict[str, dict[str, Any]] = {}

    def add(self, batch: BatchResult, index: int, repairs: DataFrame | None = None) -> None:
        """Write the rows of slice ``index`` (rewritten whole if the slice runs again);
        ``repairs``: the certificate requests a repair would send."""
        outputs = batch.outputs
        frames = {
            "changes": outputs.enrolment_changes.where(F.col("changed")).select(*CHANGE_COLUMNS),
            "audit": outputs.events.where(F.col("kind") == AUDIT).select("value"),
            "certificate": outputs.events.where(F.col("kind") == CERTIFICATE).select("value"),
            "failed": outputs.failed.select("value"),
        }
        if repairs is not None:
            frames[self.REPAIRS] = repairs.select("value")
        for kind, frame in frames.items():
            writer = frame.coalesce(1).write.mode("overwrite")
            target = f"{self._parts}/{kind}/slice={index}"
            writer.csv(target) if kind == "changes" else writer.text(target)
        for row in _per_course(batch):
            held = self._per_course.setdefault(
                row["courseid"], dict.fromkeys(row, 0) | {"courseid": row["courseid"]}
            )
            for key, value in row.items():
                if key != "courseid":
                    held[key] += value or 0

    def finish(self, counts: Counts, extra: dict[str, Any]) -> dict[str, Any]:
        """Join the parts into the report's files; returns the summary."""
        out = self.directory
        text = StructType([StructField(c, StringType()) for c in CHANGE_COLUMNS])
        for kind in self._kinds:
            source = f"{self._parts}/{kind}"
            if kind == "changes":
                rows = self._spark.read.schema(text).csv(source).select(*CHANGE_COLUMNS)
                _write_single_file(self._spark, rows, join(out, "changes.csv"), "csv")
            else:
                name = f"{kind}.jsonl" if kind == self.REPAIRS else f"{kind}-events.jsonl"
                rows = self._spark.read.text(source).select("value")
                _write_single_file(self._spark, rows, join(out, name), "text")
        self._fs.delete(self._parts, recursive=True)
        per_course = sorted(self._per_course.values(), key=lambda r: (-r["changed"], r["courseid"]))
        chart = _chart(per_course)
        if chart is not None:
            self._fs.write_bytes(join(out, "progress.png"), chart)
        summary = {
            "dryRun": True,
            **extra,
            "chart": "progress.png" if chart is not None else CHART_SKIPPED,
            "summary": backfill_summary(counts),
            "counters": counts,
            "perCourse": per_course,
        }
        text_out = json.dumps(summary, indent=2, default=str) + "\n"
        self._fs.write_bytes(join(out, "summary.json"), text_out.encode())
        return summary
