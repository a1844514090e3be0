"""Progress from consumption rows and the course structure: aggregates, completion, updates.

All transformations are column expressions, joins and group-bys (spec.md §4, design.md §3).
Each enrolment becomes one row holding its consumption, its current enrolment state and its
course's structure (one broadcast row per course, see ``core.structure``); course and unit
completedCount are then array expressions over that row, with no further join or shuffle.
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
    ENROLMENT_TABLE_KEY,
    IN_PROGRESS,
    NOT_STARTED,
    to_table_key_names,
)

RETIRED = "Retired"
# How each enrolment is handled, from its course's structure (spec.md §7, design.md §3.2).
ROUTE = "route"
OK, RETIRED_COURSE, UNRESOLVED, BROKEN = "ok", "retired", "unresolved", "broken"


def _empty_ids() -> Column:
    return F.array().cast("array<string>")


def with_consumption_defaults(consumption: DataFrame) -> DataFrame:
    """Null defaults of the original reader (spec.md §2.3): status 1, view and completed count 0."""
    return consumption.withColumns(
        {
            "status": F.coalesce(F.col("status"), F.lit(IN_PROGRESS)),
            "viewcount": F.coalesce(F.col("viewcount"), F.lit(0)),
            "completedcount": F.coalesce(F.col("completedcount"), F.lit(0)),
        }
    )


def to_user_consumption(consumption: DataFrame) -> DataFrame:
    """One row per enrolment: every consumed content, the completed ones, and contentstatus.

    Input: consumption rows (defaults applied). Output: ``userId, courseId, batchId,
    contents, completed`` (sorted id arrays), ``contentstatus`` (contentId -> status, all rows)
    and ``consumedContents`` (the rows, for failed payloads).
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


def with_enrolment_state(
    user_consumption: DataFrame, enrolments: DataFrame, *, every_enrolment: bool = False
) -> DataFrame:
    """Attach each enrolment's current row to its consumption.

    By default consumption drives (a left join: consumption without an enrolment still gets its
    aggregates, spec.md §5.1), as for sync requests. With ``every_enrolment`` the enrolments
    drive (the backfill): every enrolment gets a row, with null ``contents`` when it has no
    consumption. ``enrolments`` has the table's columns (``userid, courseid, batchid, status,
    progress, contentstatus, completedon``); when it is a connector relation the join is a
    direct join. Adds ``enrolled`` and the current ``enrolmentStatus``, ``enrolmentProgress``,
    ``enrolmentContentStatus``, ``enrolmentCompletedOn``.
    """
    current = enrolments.select(
        *[F.col(c).alias(f"_{c}") for c in ENROLMENT_TABLE_KEY],
        F.col("status").alias("enrolmentStatus"),
        F.col("progress").alias("enrolmentProgress"),
        F.col("contentstatus").alias("enrolmentContentStatus"),
        F.col("completedon").alias("enrolmentCompletedOn"),
    )
    pairs = list(zip(ENROLMENT_KEY, ENROLMENT_TABLE_KEY, strict=True))
    on = [user_consumption[k] == current[f"_{c}"] for k, c in pairs]
    joined = user_consumption.join(current, on, "right" if every_enrolment else "left")
    if every_enrolment:
        joined = joined.withColumns({k: F.col(f"_{c}") for k, c in pairs})
    return joined.withColumn("enrolled", F.col("_userid").isNotNull()).drop(
        *[f"_{c}" for c in ENROLMENT_TABLE_KEY]
    )


def with_course_structure(progress: DataFrame, structure: DataFrame) -> DataFrame:
    """Attach the course's structure row (broadcast) and the ``route`` each enrolment takes.

    ``ok``: the course has leafnodes. ``retired``: no leafnodes and the collection is Retired
    (unit rows only). ``unresolved``: no leafnodes and the collection is published or unknown
    (failed). ``broken``: a relation-cache key of the course is not a set (failed).
    """
    enriched = progress.join(F.broadcast(structure), "courseId", "left")
    leaves = F.coalesce(F.col("leafnodes"), _empty_ids())
    route = (
        F.when(F.col("structureProblem").isNotNull(), F.lit(BROKEN))
        .when(F.size(leaves) > 0, F.lit(OK))
        .when(F.col("collectionStatus") == RETIRED, F.lit(RETIRED_COURSE))
        .otherwise(F.lit(UNRESOLVED))
    )
    return enriched.withColumns({"leafnodes": leaves, ROUTE: route})


def required_leaves(
    leafnodes: Column, optionalnodes: Column, exclude_optional_nodes: bool
) -> Column:
    """Leaves a learner must complete: leafnodes minus optionalnodes when excluding (AAU rule),
    else all leafnodes (the original ER rule)."""
    leaves = F.coalesce(leafnodes, _empty_ids())
    if not exclude_optional_nodes:
        return leaves
    return F.array_except(leaves, F.coalesce(optionalnodes, _empty_ids()))


def _completed_count(required: Column) -> Column:
    return F.size(F.array_intersect(required, F.col("completed")))


def compute_course_progress(enriched: DataFrame, *, exclude_optional_nodes: bool) -> DataFrame:
    """Course completedCount over the required leaves, and whether the course is complete.

    Only enrolments whose course has leafnodes (route ``ok``). Complete iff completedCount >=
    the number of required leaves, so a course whose leaves are all optional completes at once
    (spec.md §10.5). Adds ``requiredCount, completedCount, complete``.
    """
    required = required_leaves(F.col("leafnodes"), F.col("optionalnodes"), exclude_optional_nodes)
    required_count, completed_count = F.size(required), _completed_count(required)
    return enriched.where(F.col(ROUTE) == OK).withColumns(
        {
            "requiredCount": required_count,
            COMPLETED_COUNT: completed_count,
            "complete": completed_count >= required_count,
        }
    )


def unit_ids() -> Column:
    """Every unit above the consumed contents (their ancestors minus the course itself)."""
    above = F.transform(
        F.col("contents"),
        lambda c: F.coalesce(F.try_element_at(F.col("ancestors"), c), _empty_ids()),
    )
    return F.filter(F.array_distinct(F.flatten(above)), lambda u: u != F.col("courseId"))


def compute_unit_aggregates(enriched: DataFrame, *, exclude_optional_nodes: bool) -> DataFrame:
    """completedCount of every unit that is an ancestor of a consumed content (any status).

    Enrolments of courses with leafnodes and of Retired ones (spec.md §7.5). A unit without a
    ``leafnodes`` key counts 0, as in the original. Output: ``userId, courseId, batchId,
    unitId, completedCount``.
    """
    per_unit = enriched.where(F.col(ROUTE).isin(OK, RETIRED_COURSE)).select(
        *ENROLMENT_KEY, "completed", "units", F.explode(unit_ids()).alias("unitId")
    )
    unit = F.try_element_at(F.col("units"), F.col("unitId"))
    required = required_leaves(unit["leafnodes"], unit["optionalnodes"], exclude_optional_nodes)
    return per_unit.select(
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


def _same_map(a: Column, b: Column) -> Column:
    """Maps cannot be compared with ``=``; compare their sorted entries (null: not the same)."""
    return F.coalesce(
        F.array_sort(F.map_entries(a)) == F.array_sort(F.map_entries(b)), F.lit(False)
    )


def to_enrolment_changes(
    course_progress: DataFrame, *, filter_processed_enrolments: bool, now: datetime
) -> DataFrame:
    """The new state of every existing enrolment, next to its current one (spec.md §5.4-5.6).

    No row for a missing enrolment. With ``filter_processed_enrolments`` completed enrolments
    (status 2) are left alone; without it they are recomputed but never downgraded and their
    ``completedon`` never moves (design.md §3.4). ``completedon`` is set only when an enrolment
    completes now (null: leave the column as it is). ``changed`` says whether status, progress
    or contentstatus differ from the table; ``newlyCompleted`` routes the AUDIT and certificate
    events. Before-values: ``statusBefore``, ``progressBefore``, ``completedonBefore``.
    """
    current = F.coalesce(F.col("enrolmentStatus"), F.lit(NOT_STARTED))
    rows = course_progress.where(F.col("enrolled"))
    if filter_processed_enrolments:
        rows = rows.where(current != COMPLETED)
    already_completed = current == COMPLETED
    newly_completed = F.col("complete") & ~already_completed
    status = F.when(F.col("complete") | already_completed, F.lit(COMPLETED)).otherwise(
        F.lit(IN_PROGRESS)
    )
    progress = F.col(COMPLETED_COUNT).cast("int")
    changed = (
        ~F.coalesce(status == F.col("enrolmentStatus"), F.lit(False))
        | ~F.coalesce(progress == F.col("enrolmentProgress"), F.lit(False))
        | ~_same_map(F.col("contentstatus"), F.col("enrolmentContentStatus"))
    )
    return to_table_key_names(
        rows.select(
            *ENROLMENT_KEY,
            status.alias("status"),
            progress.alias("progress"),
            F.col("contentstatus"),
            F.when(newly_completed, F.lit(now).cast("timestamp")).alias("completedon"),
            F.lit(now).cast("timestamp").alias("datetime"),
            newly_completed.alias("newlyCompleted"),
            changed.alias("changed"),
            F.col("enrolmentStatus").alias("statusBefore"),
            F.col("enrolmentProgress").alias("progressBefore"),
            F.col("enrolmentCompletedOn").alias("completedonBefore"),
        )
    )


ENROLMENT_UPDATE_COLUMNS = [
    *ENROLMENT_TABLE_KEY,
    "status",
    "progress",
    "contentstatus",
    "completedon",
    "datetime",
    "newlyCompleted",
]


def to_enrolment_updates(changes: DataFrame, *, only_changed: bool) -> DataFrame:
    """The ``user_enrolments`` rows to write: every recomputed one, or only the changed ones."""
    rows = changes.where(F.col("changed")) if only_changed else changes
    return rows.select(*ENROLMENT_UPDATE_COLUMNS)
