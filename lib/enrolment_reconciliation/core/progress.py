"""Progress from consumption rows and the relation cache: course and unit aggregates, completion.

All transformations are column expressions, joins and group-bys (spec.md §4, design.md §3).
The relation-cache frames are small (one row per course, unit or consumed content) and are
broadcast; the consumption side grows with the batch and is never collected.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from enrolment_reconciliation.schemas import (
    COMPLETED,
    COMPLETED_COUNT,
    CONTEXT_PREFIX,
    COURSE_ACTIVITY_TYPE,
    ENROLMENT_KEY,
    IN_PROGRESS,
    NOT_STARTED,
)

RETIRED = "Retired"


def _empty_ids() -> Column:
    return F.array().cast("array<string>")


def with_consumption_defaults(consumption: DataFrame) -> DataFrame:
    """Null defaults of the original reader (spec.md §2.3): status 1, view and completed count 0."""
    return (
        consumption.withColumn("status", F.coalesce(F.col("status"), F.lit(IN_PROGRESS)))
        .withColumn("viewcount", F.coalesce(F.col("viewcount"), F.lit(0)))
        .withColumn("completedcount", F.coalesce(F.col("completedcount"), F.lit(0)))
    )


def to_user_consumption(consumption: DataFrame) -> DataFrame:
    """One row per enrolment: every consumed content, the completed ones, and contentstatus.

    Input: consumption rows (defaults applied). Output: ``userId, courseId, batchId,
    contents, completed`` (sorted id arrays) and ``contentstatus`` (contentId -> status, all rows).
    """
    entry = F.struct(F.col("contentid"), F.col("status"))
    return consumption.groupBy(
        F.col("userid").alias("userId"),
        F.col("courseid").alias("courseId"),
        F.col("batchid").alias("batchId"),
    ).agg(
        F.array_sort(F.collect_set("contentid")).alias("contents"),
        F.array_sort(F.collect_set(F.when(F.col("status") == COMPLETED, F.col("contentid")))).alias(
            "completed"
        ),
        F.map_from_entries(F.array_sort(F.collect_list(entry))).alias("contentstatus"),
        F.collect_list(
            F.struct(
                F.col("contentid").alias("contentId"),
                F.col("status"),
                F.col("viewcount").alias("viewCount"),
                F.col("completedcount").alias("completedCount"),
            )
        ).alias("consumedContents"),
    )


def _required(leafnodes: Column, optionalnodes: Column, exclude_optional_nodes: bool) -> Column:
    leaves = F.coalesce(leafnodes, _empty_ids())
    if not exclude_optional_nodes:
        return leaves
    return F.array_except(leaves, F.coalesce(optionalnodes, _empty_ids()))


def _completed_count(required: Column) -> Column:
    return F.size(F.array_intersect(required, F.col("completed")))


def compute_course_progress(
    user_consumption: DataFrame, course_nodes: DataFrame, *, exclude_optional_nodes: bool
) -> DataFrame:
    """Course completedCount over the required leaves, and whether the course is complete.

    ``course_nodes`` holds one row per course whose ``leafnodes`` key exists (non-empty).
    Required leaves are leafnodes minus optionalnodes when ``exclude_optional_nodes`` (our
    default, the AAU rule) or all leafnodes (the original ER rule). Complete iff
    completedCount >= the number of required leaves, so a course whose leaves are all optional
    completes at once (spec.md §10.5). Adds ``requiredCount, completedCount, complete``.
    """
    nodes = F.broadcast(course_nodes.select("courseId", "leafnodes", "optionalnodes"))
    required = _required(F.col("leafnodes"), F.col("optionalnodes"), exclude_optional_nodes)
    return (
        user_consumption.join(nodes, "courseId", "inner")
        .withColumn("_required", required)
        .withColumn("requiredCount", F.size("_required"))
        .withColumn(COMPLETED_COUNT, _completed_count(F.col("_required")))
        .withColumn("complete", F.col(COMPLETED_COUNT) >= F.col("requiredCount"))
        .drop("_required", "leafnodes", "optionalnodes")
    )


def filter_missing_leafnodes(user_consumption: DataFrame, course_nodes: DataFrame) -> DataFrame:
    """Enrolments whose course has no ``leafnodes`` key in the relation cache (spec.md §7)."""
    return user_consumption.join(
        F.broadcast(course_nodes.select("courseId")), "courseId", "left_anti"
    )


def with_collection_status(missing: DataFrame, collection_status: DataFrame) -> DataFrame:
    """Attach the search service's status; ``retired`` marks the ones to skip quietly."""
    return missing.join(F.broadcast(collection_status), "courseId", "left").withColumn(
        "retired", F.coalesce(F.col("collectionStatus") == RETIRED, F.lit(False))
    )


def compute_unit_aggregates(
    user_consumption: DataFrame,
    ancestors: DataFrame,
    unit_nodes: DataFrame,
    *,
    exclude_optional_nodes: bool,
) -> DataFrame:
    """completedCount of every unit that is an ancestor of a consumed content (any status).

    A unit without a ``leafnodes`` key counts 0, as in the original. Output: ``userId, courseId,
    batchId, unitId, completedCount``.
    """
    consumed = user_consumption.select(
        *ENROLMENT_KEY, "completed", F.explode("contents").alias("contentId")
    )
    units = (
        consumed.join(F.broadcast(ancestors), ["courseId", "contentId"], "inner")
        .select(*ENROLMENT_KEY, "completed", F.explode("ancestors").alias("unitId"))
        .where(F.col("unitId") != F.col("courseId"))
        .dropDuplicates([*ENROLMENT_KEY, "unitId"])
    )
    required = _required(F.col("leafnodes"), F.col("optionalnodes"), exclude_optional_nodes)
    return units.join(F.broadcast(unit_nodes), ["courseId", "unitId"], "left").select(
        *ENROLMENT_KEY, "unitId", _completed_count(required).alias(COMPLETED_COUNT)
    )


def to_activity_agg_rows(
    course_progress: DataFrame, unit_aggregates: DataFrame | None, now: datetime
) -> DataFrame:
    """``user_activity_agg`` rows: course and unit completedCount as maps to append.

    Unit rows keep ``activity_type='Course'`` because readers expect it (spec.md §10.1).
    """

    def rows(df: DataFrame, activity_id: str) -> DataFrame:
        return df.select(
            F.lit(COURSE_ACTIVITY_TYPE).alias("activity_type"),
            F.col(activity_id).alias("activity_id"),
            F.col("userId").alias("user_id"),
            F.concat(F.lit(CONTEXT_PREFIX), F.col("batchId")).alias("context_id"),
            F.create_map(F.lit(COMPLETED_COUNT), F.col(COMPLETED_COUNT).cast("double")).alias(
                "aggregates"
            ),
            F.create_map(F.lit(COMPLETED_COUNT), F.lit(now).cast("timestamp")).alias(
                "agg_last_updated"
            ),
        )

    course_rows = rows(course_progress, "courseId")
    if unit_aggregates is None:
        return course_rows
    return course_rows.unionByName(rows(unit_aggregates, "unitId"))


def to_enrolment_updates(
    course_progress: DataFrame,
    enrolments: DataFrame,
    *,
    filter_processed_enrolments: bool,
    now: datetime,
) -> DataFrame:
    """``user_enrolments`` updates for enrolments that exist (spec.md §5.4-5.6, design.md §3.4).

    No row for a missing enrolment. With ``filter_processed_enrolments`` completed enrolments
    (status 2) are left alone; without it they are updated but never downgraded and their
    ``completedon`` never moves. ``completedon`` is set only when an enrolment completes now
    (null means "leave the column as it is"). ``newlyCompleted`` routes the AUDIT and
    certificate events.
    """
    current = enrolments.select(
        F.col("userid").alias("userId"),
        F.col("courseid").alias("courseId"),
        F.col("batchid").alias("batchId"),
        F.coalesce(F.col("status"), F.lit(NOT_STARTED)).alias("_current"),
    )
    joined = course_progress.join(current, ENROLMENT_KEY, "inner")
    if filter_processed_enrolments:
        joined = joined.where(F.col("_current") != COMPLETED)
    already_completed = F.col("_current") == COMPLETED
    newly_completed = F.col("complete") & ~already_completed
    return joined.select(
        F.col("userId").alias("userid"),
        F.col("courseId").alias("courseid"),
        F.col("batchId").alias("batchid"),
        F.when(F.col("complete") | already_completed, F.lit(COMPLETED))
        .otherwise(F.lit(IN_PROGRESS))
        .alias("status"),
        F.col(COMPLETED_COUNT).cast("int").alias("progress"),
        F.col("contentstatus"),
        F.when(newly_completed, F.lit(now).cast("timestamp")).alias("completedon"),
        F.lit(now).cast("timestamp").alias("datetime"),
        newly_completed.alias("newlyCompleted"),
    )
