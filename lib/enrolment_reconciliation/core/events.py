"""Output events as DataFrames of JSON strings, in the shapes of docs/behaviour.md §6.

Event ids are derived from keys, never random: ``mid`` (and the AUDIT ``sid``/``did``) are
name-based UUIDs of (userId, courseId, batchId, kind), so a duplicate published after a crash
is recognisable (docs/design.md §3.3).
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from enrolment_reconciliation.core.expressions import built_once, empty_ids
from enrolment_reconciliation.core.progress import BROKEN, ROUTE, UNRESOLVED
from enrolment_reconciliation.core.schemas import (
    AUDIT,
    CERTIFICATE,
    ENROLMENT_KEY,
    to_event_key_names,
)

AUDIT_KIND = "enrol-complete"
CERTIFICATE_KIND = "issue-certificate"


def deterministic_uuid(*parts: Column) -> Column:
    """A UUID-formatted SHA-256 digest of the parts joined by ``|``.

    Example: ``deterministic_uuid(F.col("userId"), F.lit("x"))`` gives the same id for the same
    user every time.
    """
    digest = F.sha2(F.concat_ws("|", *parts), 256)
    pieces = [(1, 8), (9, 4), (13, 4), (17, 4), (21, 12)]
    return F.concat_ws("-", *[F.substring(digest, start, n) for start, n in pieces])


def _key_uuid(kind: str) -> Column:
    return deterministic_uuid(*(F.col(c) for c in ENROLMENT_KEY), F.lit(kind))


def _epoch_ms(now: datetime) -> Column:
    return F.lit(int(now.timestamp() * 1000)).cast("long")


_ETS = "_ets"  # the batch's time in epoch ms, a column so the event expressions are built once


@built_once
def _audit_event() -> tuple[Column, Column]:
    """The AUDIT event's mid and JSON text, over the enrolment key and ``_ets``."""
    ets = F.col(_ETS)
    mid = F.concat(F.lit("LP.AUDIT."), _key_uuid(AUDIT_KIND))
    event = F.struct(
        F.struct(F.col("userId").alias("id"), F.lit("User").alias("type")).alias("actor"),
        F.lit("AUDIT").alias("eid"),
        F.struct(
            F.array(F.lit("status"), F.lit("completedon")).alias("props"),
            F.lit(AUDIT_KIND).alias("type"),
        ).alias("edata"),
        F.lit("3.0").alias("ver"),
        ets.alias("syncts"),
        ets.alias("ets"),
        F.struct(
            F.lit("in.sunbird").alias("channel"),
            F.lit("Course").alias("env"),
            _key_uuid(AUDIT_KIND + ":sid").alias("sid"),
            _key_uuid(AUDIT_KIND + ":did").alias("did"),
            F.struct(
                F.lit("3.0").alias("ver"),
                F.lit("org.sunbird.learning.platform").alias("id"),
                F.lit("course-progress-updater").alias("pid"),
            ).alias("pdata"),
            F.array(
                F.struct(F.lit("CourseBatch").alias("type"), F.col("batchId").alias("id")),
                F.struct(F.lit("Course").alias("type"), F.col("courseId").alias("id")),
            ).alias("cdata"),
        ).alias("context"),
        mid.alias("mid"),
        F.struct(
            F.col("userId").alias("id"),
            F.lit("User").alias("type"),
            F.struct(F.col("courseId").alias("l1")).alias("rollup"),
        ).alias("object"),
        empty_ids().alias("tags"),
    )
    return mid, F.to_json(event)


@built_once
def _certificate_event(mid_kind: str = CERTIFICATE_KIND) -> tuple[Column, Column]:
    """The certificate request's mid and JSON text, over the enrolment key and ``_ets``;
    ``mid_kind`` names what the mid is derived from (a completion's, or a repair run's)."""
    mid = F.concat(F.lit("LP."), _key_uuid(mid_kind))
    event = F.struct(
        F.lit("BE_JOB_REQUEST").alias("eid"),
        F.col(_ETS).alias("ets"),
        mid.alias("mid"),
        F.struct(
            F.lit("Course Certificate Generator").alias("id"), F.lit("System").alias("type")
        ).alias("actor"),
        F.struct(
            F.struct(F.lit("1.0").alias("ver"), F.lit("org.sunbird.platform").alias("id")).alias(
                "pdata"
            )
        ).alias("context"),
        F.struct(
            F.concat_ws("_", F.col("batchId"), F.col("courseId")).alias("id"),
            F.lit("CourseCertificateGeneration").alias("type"),
        ).alias("object"),
        F.struct(
            F.array(F.col("userId")).alias("userIds"),
            F.lit(CERTIFICATE_KIND).alias("action"),
            F.lit(1).alias("iteration"),
            F.lit("auto-issue").alias("trigger"),
            F.col("batchId").alias("batchId"),
            F.lit(False).alias("reIssue"),
            F.col("courseId").alias("courseId"),
        ).alias("edata"),
    )
    return mid, F.to_json(event)


def _events(
    completed: DataFrame, now: datetime, kind: str, mid_kind: str = CERTIFICATE_KIND
) -> DataFrame:
    return completed.withColumn(_ETS, _epoch_ms(now)).select(*_event_columns(kind, mid_kind))


@built_once
def _event_columns(kind: str, mid_kind: str = CERTIFICATE_KIND) -> list[Column]:
    mid, value = _audit_event() if kind == AUDIT else _certificate_event(mid_kind)
    return [
        F.lit(kind).alias("kind"),
        mid.alias("mid"),
        *[F.col(k) for k in ENROLMENT_KEY],
        value.alias("value"),
    ]


def to_audit_events(completed: DataFrame, now: datetime) -> DataFrame:
    """AUDIT ``enrol-complete`` telemetry for each newly completed enrolment
    (docs/behaviour.md §6.1)."""
    return _events(completed, now, AUDIT)


def to_certificate_events(completed: DataFrame, now: datetime) -> DataFrame:
    """BE_JOB_REQUEST ``issue-certificate`` for each newly completed enrolment
    (docs/behaviour.md §6.2)."""
    return _events(completed, now, CERTIFICATE)


def to_certificate_repairs(enrolments: DataFrame, now: datetime, run_id: str) -> DataFrame:
    """The certificate request of a completion, sent again for each enrolment (event key names)
    by a repair run: the same shape (``reIssue`` false), a ``mid`` of the enrolment and the run,
    so a repeated repair run is told apart from a duplicate of the same run."""
    return _events(enrolments, now, CERTIFICATE, f"{CERTIFICATE_KIND}:repair:{run_id}")


def to_completion_events(enrolment_updates: DataFrame, now: datetime) -> DataFrame:
    """AUDIT and certificate events for the enrolments that completed in this batch."""
    completed = to_event_key_names(
        enrolment_updates.where(F.col("newlyCompleted")).select("userid", "courseid", "batchid")
    )
    return to_audit_events(completed, now).unionByName(to_certificate_events(completed, now))


def to_structure_failures(enriched: DataFrame) -> DataFrame:
    """Failed-topic rows for enrolments whose course structure cannot be used (docs/behaviour.md
    §7).

    A published course without leafnodes, a course the search service does not know, or a
    course whose relation-cache keys are broken (``structureProblem``). Clean JSON instead of
    the original's Gson dump (docs/design.md §3.6):
    ``{userId, batchId, courseId, contents: {id: {status, viewCount, completedCount}}, reason}``.
    """
    failing, columns = _structure_failure_columns()
    return enriched.where(failing).select(*columns)


@built_once
def _structure_failure_columns() -> tuple[Column, list[Column]]:
    contents = F.map_from_entries(
        F.transform(
            F.col("consumedContents"),
            lambda c: F.struct(
                c["contentId"],
                F.struct(c["status"], c["viewCount"], c["completedCount"]),
            ),
        )
    )
    reason = (
        F.when(F.col("structureProblem").isNotNull(), F.col("structureProblem"))
        .when(
            F.col("collectionStatus").isNull(),
            F.concat(F.lit("There are no published or retired collection with id: "), "courseId"),
        )
        .otherwise(
            F.concat(F.lit("leaf nodes are not available for a published collection: "), "courseId")
        )
    )
    value = F.to_json(
        F.struct(
            F.col("userId"),
            F.col("batchId"),
            F.col("courseId"),
            contents.alias("contents"),
            reason.alias("reason"),
        )
    )
    return F.col(ROUTE).isin(UNRESOLVED, BROKEN), [reason.alias("reason"), value.alias("value")]
