"""The one batch function every mode calls: read inputs -> reconcile -> count.

``reconcile_batch`` takes what a reader produced (``inputs.read_requested`` for the stream and
``sync``, ``inputs.read_in_scope`` for the backfill), reads the course structures they need
from Redis (pipelined, broadcast), runs the pure core, and counts the outputs. Writing and
publishing the result is the caller's (``apply``), so a dry run or a notebook uses the same
function.

The Spark jobs of a batch are few by design: one job materialises the inputs and returns what
the driver must know (request counters, consumed contents per course), one broadcasts the
structure, one materialises the reconciled rows and counts every output; each write is then one
more job.

Materialised frames (``materialise``) are computed once by the first job that needs them and
are leaves of every later plan, so the driver plans each job of the batch in milliseconds.

Example (notebook)::

    cfg = load_config()
    spark = build_spark_session(cfg)
    resources = BatchResources.from_config(cfg)
    raw = spark.createDataFrame([(json.dumps(request).encode(),)], "value binary")
    result = reconcile_batch(spark, read_requested(spark, raw, cfg), cfg, resources)
    result.outputs.enrolment_updates.show()
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from enrolment_reconciliation.batch.clock import PhaseClock, utc_now_ms
from enrolment_reconciliation.batch.materialise import drop_materialised, materialise_lazily
from enrolment_reconciliation.batch.read import SourceFrames
from enrolment_reconciliation.batch.tally import tally
from enrolment_reconciliation.core.counters import Counter, Counts, new_counts
from enrolment_reconciliation.core.progress import CONSUMED_IDS, with_consumed_ids
from enrolment_reconciliation.core.reconcile import (
    BatchInputs,
    ReconcileSettings,
    Reconciliation,
    reconcile,
)
from enrolment_reconciliation.io.relation_cache import (
    CourseStructures,
    ReadStats,
    RelationCacheReader,
)
from enrolment_reconciliation.io.search import CollectionStatusClient
from enrolment_reconciliation.runtime.config import JobConfig

log = logging.getLogger(__name__)


def settings_from_config(cfg: JobConfig, *, write_only_changes: bool = False) -> ReconcileSettings:
    return ReconcileSettings(
        exclude_optional_nodes=cfg.activity.exclude_optional_nodes,
        module_aggs_enabled=cfg.activity.module_aggs_enabled,
        filter_processed_enrolments=cfg.activity.filter_processed_enrolments,
        write_only_changes=write_only_changes,
    )


@dataclass
class BatchResources:
    """Long-lived helpers kept across micro-batches (their TTL caches must survive)."""

    relation_cache: RelationCacheReader
    search: CollectionStatusClient
    # a sliced backfill reads the whole relation cache once per run, not once per slice
    scan_once: bool = False
    _structures: CourseStructures | None = field(default=None, repr=False)
    _scanned: bool = field(default=False, repr=False)

    @classmethod
    def from_config(cls, cfg: JobConfig) -> BatchResources:
        return cls(
            relation_cache=RelationCacheReader.of(cfg.redis),
            search=CollectionStatusClient.of(cfg.search),
        )

    def scan_relation_cache(self) -> ReadStats:
        """Every relation-cache key (the scan reader's batches); once only with ``scan_once``."""
        if self.scan_once and self._scanned:
            return ReadStats()
        self._scanned = True
        return self.relation_cache.scan()

    def structures(self, spark: SparkSession) -> CourseStructures:
        if self._structures is None:
            self._structures = CourseStructures(spark, self.relation_cache, self.search)
        return self._structures


@dataclass
class BatchResult:
    """The outputs of one batch (derived from persisted frames until :meth:`release`), its
    counters and the seconds of each phase."""

    outputs: Reconciliation
    counters: Counts
    now: datetime
    seconds: dict[str, float] = field(default_factory=dict)
    _persisted: list[DataFrame] = field(default_factory=list, repr=False)

    def release(self) -> None:
        """Drop the materialised frames of this batch."""
        for df in self._persisted:
            drop_materialised(df)
        self._persisted.clear()


def _prepare(progress: DataFrame, *, scanned: bool) -> tuple[Counts, dict[str, set[str]]]:
    """One Spark job: per course, the consumed contents and the enrolment counts.

    Bounded by the number of courses (and their contents), never by the number of users; the
    backfill, which reads every relation-cache key anyway, does not ask for the contents.
    """
    contents = (
        F.lit(None).cast("array<string>")
        if scanned
        else F.array_distinct(F.flatten(F.collect_set("contents")))
    )
    consumed = F.when(F.col("contents").isNotNull(), F.size("contents")).otherwise(0)
    per_course = progress.groupBy("courseId").agg(
        contents.alias("contents"),
        F.count(F.lit(1)).alias("rows"),
        F.count("contents").alias("withConsumption"),
        F.sum(consumed).alias("consumptionRows"),
    )
    rows = with_consumption = consumption_rows = 0
    course_contents: dict[str, set[str]] = {}
    for row in per_course.collect():
        rows += row["rows"]
        with_consumption += row.withConsumption
        consumption_rows += row.consumptionRows or 0
        course_contents[row.courseId] = set(row.contents or ())
    counts: Counts = {Counter.ENROLMENTS_WITH_CONSUMPTION: with_consumption}
    if scanned:
        counts[Counter.ENROLMENTS_SCANNED] = rows
        counts[Counter.CONSUMPTION_ROWS_SCANNED] = consumption_rows
    # one user_enrolments lookup per enrolment with consumption (a scan: every row it read)
    counts[Counter.ENROLMENT_READS] = rows if scanned else with_consumption
    return counts, course_contents


def _course_structures(
    spark: SparkSession,
    cfg: JobConfig,
    resources: BatchResources,
    course_contents: dict[str, set[str]],
    *,
    scanned: bool,
) -> tuple[DataFrame, Counts]:
    """The broadcast structure of the batch's courses and the relation-cache counters: a scan
    of every key for the backfill, the keys of the consumed contents otherwise."""
    if scanned:
        stats = resources.scan_relation_cache()
    else:
        stats = resources.relation_cache.fetch_for_contents(
            course_contents,
            with_optional=cfg.activity.exclude_optional_nodes,
            with_units=cfg.activity.module_aggs_enabled,
        )
    structure, structure_counts = resources.structures(spark).frame(course_contents)
    return structure, stats.counts() | structure_counts


def reconcile_batch(
    spark: SparkSession,
    source: SourceFrames,
    cfg: JobConfig,
    resources: BatchResources,
    *,
    settings: ReconcileSettings | None = None,
    now: datetime | None = None,
) -> BatchResult:
    """Reconcile what ``source`` read: structures from Redis, the core, the counts.

    Raises on infrastructure errors (the caller retries the batch); bad requests and courses
    with a broken structure become failed rows.
    """
    now = now or utc_now_ms()
    settings = settings or settings_from_config(cfg, write_only_changes=source.scanned)
    persisted: list[DataFrame] = list(source.materialised)

    def materialised(df: DataFrame) -> DataFrame:
        persisted.append(materialise_lazily(df))
        return persisted[-1]

    counts = new_counts()
    clock = PhaseClock()
    requests = source.requests  # materialised by the reader: its direct joins read them too
    # kept without the id arrays derived from the consumed rows (half of each row's bytes)
    progress = with_consumed_ids(materialised(source.progress.drop(*CONSUMED_IDS)))
    with clock("read"):
        prepared, course_contents = _prepare(progress, scanned=source.scanned)
    counts.update(prepared)
    with clock("structure"):
        structure, structure_counts = _course_structures(
            spark, cfg, resources, course_contents, scanned=source.scanned
        )
    counts.update(structure_counts)

    inputs = BatchInputs(
        progress=progress.where(F.col("contents").isNotNull()),
        structure=structure,
        requests=requests,
        current_aggregates=source.current_aggregates,
        current_aggregates_by_key=source.current_aggregates_by_key,
    )
    with clock("plan"):  # building the core's frames: py4j calls, no Spark job
        result = reconcile(inputs, settings, now=now, materialise=materialised)
    with clock("reconcile"):
        tallied = tally(result, settings, requests)
    counts.update(tallied)
    return BatchResult(
        result,
        counts,
        now,
        seconds=clock.seconds,
        _persisted=persisted,
    )
