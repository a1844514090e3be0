"""The one batch function every mode calls: raw sync requests in, frames to write out.

``reconcile_batch`` wires the readers (connector direct joins, Redis, search service) around the
pure core. The stream's ``foreachBatch``, the ``sync`` command and notebooks call it with the
same arguments; writing and publishing the result is the caller's (see ``sinks``).

Example (notebook)::

    cfg = load_config()
    spark = build_spark_session(cfg)
    resources = BatchResources.from_config(cfg)
    raw = spark.createDataFrame([(json.dumps(request).encode(),)], "value binary")
    result = reconcile_batch(spark, raw, cfg, resources)
    result.enrolment_updates.show()
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from enrolment_reconciliation.config import JobConfig
from enrolment_reconciliation.core.progress import to_user_consumption, with_consumption_defaults
from enrolment_reconciliation.core.reconcile import ReconcileSettings, reconcile
from enrolment_reconciliation.core.requests import (
    VALID,
    request_counter_columns,
    to_enrolment_keys,
    to_sync_requests,
)
from enrolment_reconciliation.io.cassandra import read_consumption_for, read_enrolments_for
from enrolment_reconciliation.io.relation_cache import (
    LEAFNODES,
    RelationCacheReader,
    to_relation_frames,
)
from enrolment_reconciliation.io.search import CollectionStatusClient
from enrolment_reconciliation.schemas import (
    AUDIT,
    CERTIFICATE,
    COLLECTION_STATUS_SCHEMA,
    ENROLMENT_KEY,
)


def settings_from_config(cfg: JobConfig) -> ReconcileSettings:
    return ReconcileSettings(
        exclude_optional_nodes=cfg.exclude_optional_nodes,
        module_aggs_enabled=cfg.module_aggs_enabled,
        filter_processed_enrolments=cfg.filter_processed_enrolments,
    )


@dataclass
class BatchResources:
    """Long-lived helpers kept across micro-batches (their TTL caches must survive)."""

    relation_cache: RelationCacheReader
    search: CollectionStatusClient

    @classmethod
    def from_config(cls, cfg: JobConfig) -> BatchResources:
        return cls(
            relation_cache=RelationCacheReader.from_config(cfg),
            search=CollectionStatusClient.from_config(cfg),
        )


@dataclass
class BatchResult:
    """The outputs of one batch (persisted until :meth:`release`) and its counters."""

    activity_aggregates: DataFrame
    enrolment_updates: DataFrame
    events: DataFrame
    failed: DataFrame
    counters: dict[str, int]
    now: datetime
    _persisted: list[DataFrame] = field(default_factory=list, repr=False)

    def release(self) -> None:
        """Drop the cached frames of this batch."""
        for df in self._persisted:
            df.unpersist()
        self._persisted.clear()


def utc_now_ms() -> datetime:
    """Now, truncated to the millisecond precision of Cassandra timestamps."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _course_contents(user_consumption: DataFrame) -> dict[str, set[str]]:
    """Consumed content ids per course: bounded by the catalogue, not by users."""
    rows = (
        user_consumption.select("courseId", F.explode("contents").alias("contentId"))
        .distinct()
        .groupBy("courseId")
        .agg(F.collect_list("contentId").alias("contents"))
        .collect()
    )
    grouped: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        grouped[row.courseId].update(row.contents)
    return grouped


def _request_counters(requests: DataFrame) -> dict[str, int]:
    valid_key = F.when(
        F.col("requestStatus") == VALID, F.concat_ws("\u0001", *[F.col(c) for c in ENROLMENT_KEY])
    )
    row = requests.agg(
        *request_counter_columns(),
        # one keyed read per distinct valid enrolment (the original: one per request)
        F.count_distinct(valid_key).alias("consumption.db-read-count"),
    ).first()
    return {
        (name if name.startswith("consumption.") else f"requests.{name}"): value or 0
        for name, value in row.asDict().items()
    }


def reconcile_batch(
    spark: SparkSession,
    raw: DataFrame,
    cfg: JobConfig,
    resources: BatchResources,
    *,
    now: datetime | None = None,
) -> BatchResult:
    """Reconcile one batch of raw sync requests (Kafka ``value`` with partition/offset, or the
    output of ``to_sync_requests``).

    Reads only what the batch needs: consumption and enrolment rows by connector direct joins of
    the distinct enrolment keys, relation-cache keys of the consumed contents (pipelined,
    TTL-cached), and the search service only for courses without leafnodes. Raises on
    infrastructure errors (the caller retries the batch); bad requests become failed rows.
    """
    now = now or utc_now_ms()
    persisted: list[DataFrame] = []

    def keep(df: DataFrame) -> DataFrame:
        persisted.append(df.persist(StorageLevel.MEMORY_AND_DISK))
        return persisted[-1]

    # The stream hands over requests it already parsed (to observe their counters).
    requests = keep(raw if "requestStatus" in raw.columns else to_sync_requests(raw))
    counters = _request_counters(requests)
    keys = to_enrolment_keys(requests)

    consumption = with_consumption_defaults(read_consumption_for(spark, keys, cfg))
    user_consumption = keep(to_user_consumption(consumption))
    course_contents = _course_contents(user_consumption)
    snapshot = resources.relation_cache.fetch(
        course_contents,
        with_optional=cfg.exclude_optional_nodes,
        with_units=cfg.module_aggs_enabled,
    )
    relation = to_relation_frames(spark, snapshot, course_contents)
    counters["relation-cache.cache-hit-count"] = snapshot.keys_read
    counters["relation-cache.cache-miss-count"] = snapshot.keys_empty
    counters["relation-cache.redis-read-count"] = snapshot.redis_reads

    missing_courses = [c for c in course_contents if not snapshot.get(c, c, LEAFNODES)]
    calls_before = resources.search.calls
    statuses = resources.search.statuses(missing_courses)
    counters["search.search-call-count"] = resources.search.calls - calls_before
    collection_status = spark.createDataFrame(sorted(statuses.items()), COLLECTION_STATUS_SCHEMA)

    enrolments = read_enrolments_for(spark, user_consumption.select(*ENROLMENT_KEY), cfg)
    result = reconcile(
        requests,
        user_consumption,
        relation.course_nodes,
        relation.unit_nodes,
        relation.ancestors,
        collection_status,
        enrolments,
        settings=settings_from_config(cfg),
        now=now,
    )
    course_progress = keep(result.course_progress)
    aggregates = keep(result.activity_aggregates)
    updates = keep(result.enrolment_updates)
    events = keep(result.events)
    failed = keep(result.failed)

    # Every output count in one Spark job (it also materialises the persisted outputs).
    tally = dict(
        aggregates.select(F.lit("aggregates").alias("k"))
        .unionByName(user_consumption.select(F.lit("consumed").alias("k")))
        .unionByName(course_progress.select(F.lit("progress").alias("k")))
        .unionByName(updates.select(F.lit("updates").alias("k")))
        .unionByName(events.select(F.col("kind").alias("k")))
        .unionByName(failed.select(F.lit("failed").alias("k")))
        .unionByName(
            result.missing_leafnodes.select(
                F.when(F.col("retired"), "retired").otherwise("unresolved").alias("k")
            )
        )
        .groupBy("k")
        .count()
        .collect()
    )
    counters.update(
        {
            "consumption.enrolments-with-consumption-count": tally.get("consumed", 0),
            "progress.retired-consumption-events-count": tally.get("retired", 0),
            "progress.failed-events-count": tally.get("unresolved", 0),
            "aggregates.activity-agg-rows-count": tally.get("aggregates", 0),
            "enrolment.db-read-count": tally.get("progress", 0),
            "enrolment.enrolment-update-count": tally.get("updates", 0),
            "enrolment.enrolment-complete-count": tally.get(CERTIFICATE, 0),
            "enrolment.cert-issue-events-count": tally.get(CERTIFICATE, 0),
            "enrolment.audit-events-count": tally.get(AUDIT, 0),
            "failed.failed-events-count": tally.get("failed", 0),
        }
    )
    return BatchResult(
        activity_aggregates=aggregates,
        enrolment_updates=updates,
        events=events,
        failed=failed,
        counters=counters,
        now=now,
        _persisted=persisted,
    )
