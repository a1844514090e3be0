"""Progress from consumption rows and the course structure: aggregates, completion, updates.

All transformations are column expressions, joins and group-bys (docs/behaviour.md §4,
docs/design.md §3). Each enrolment becomes one row holding its consumption, its current enrolment
state and its course's structure (one broadcast row per course, see ``core.structure``); course and
unit completedCount are then array expressions over that row (``with_progress``), computed once per
enrolment, with no further join or shuffle; every output is a projection of that row.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, IntegerType, StringType, StructField, StructType

from enrolment_reconciliation.core.expressions import built_once, empty_ids
from enrolment_reconciliation.core.schemas import (
    COMPLETED,
    COMPLETED_COUNT,
    CONTEXT_PREFIX,
    COURSE_ACTIVITY_TYPE,
    ENROLMENT_KEY,
    ENROLMENT_TABLE_KEY,
    IN_PROGRESS,
    NOT_STARTED,
    UNIT_STRUCTURE_SCHEMA,
    to_table_key_names,
)

RETIRED = "Retired"
# How each enrolment is handled, from its course's structure (docs/behaviour.md §7, docs/design.md
# §3.2).
ROUTE = "route"
OK, RETIRED_COURSE, UNRESOLVED, BROKEN = "ok", "retired", "unresolved", "broken"


@built_once
def _consumption_defaults() -> dict[str, Column]:
    return {
        "status": F.coalesce(F.col("status"), F.lit(IN_PROGRESS)),
        "viewcount": F.coalesce(F.col("viewcount"), F.lit(0)),
        "completedcount": F.coalesce(F.col("completedcount"), F.lit(0)),
    }


def with_consumption_defaults(consumption: DataFrame) -> DataFrame:
    """Null defaults of the original reader (docs/behaviour.md §2.3): status 1, view and
    completed count 0."""
    return consumption.withColumns(_consumption_defaults())


def to_user_consumption(consumption: DataFrame) -> DataFrame:
    """One row per enrolment: every consumed content, the completed ones, and contentstatus.

    Input: consumption rows (defaults applied). Output: ``userId, courseId, batchId,
    contents, completed`` (sorted id arrays), ``contentstatus`` (contentId -> status, all rows)
    and ``consumedContents`` (the rows, for failed payloads).
    """
    keys, consumed = _user_consumption_columns()
    return with_consumed_ids(consumption.groupBy(*keys).agg(consumed))


# Derived from ``consumedContents`` alone: a frame kept in memory can leave them out and derive
# them again when it is read (``with_consumed_ids``), which halves what it holds per enrolment.
CONSUMED_IDS = ("contents", "completed", "contentstatus")


def with_consumed_ids(user_consumption: DataFrame) -> DataFrame:
    """Add (or compute again) ``contents``, ``completed`` and ``contentstatus`` from
    ``consumedContents``."""
    return user_consumption.withColumns(_consumed_id_columns())


@built_once
def _user_consumption_columns() -> tuple[list[Column], Column]:
    """The grouping keys and the one aggregate."""
    # One list per enrolment, sorted by contentId (ids are unique in a partition: the clustering
    # key); the rest is derived from it, so the shuffle carries each row once.
    consumed = F.array_sort(
        F.collect_list(
            F.struct(
                F.col("contentid").alias("contentId"),
                F.col("status"),
                F.col("viewcount").alias("viewCount"),
                F.col("completedcount").alias("completedCount"),
            )
        )
    )
    keys = [F.col(c).alias(k) for c, k in zip(ENROLMENT_TABLE_KEY, ENROLMENT_KEY, strict=True)]
    return keys, consumed.alias("consumedContents")


@built_once
def _consumed_id_columns() -> dict[str, Column]:
    rows = F.col("consumedContents")
    return {
        "contents": F.transform(rows, lambda c: c["contentId"]),
        "completed": F.transform(
            F.filter(rows, lambda c: c["status"] == COMPLETED), lambda c: c["contentId"]
        ),
        "contentstatus": F.map_from_entries(
            F.transform(rows, lambda c: F.struct(c["contentId"], c["status"]))
        ),
    }


def with_enrolment_state(
    user_consumption: DataFrame, enrolments: DataFrame, *, every_enrolment: bool = False
) -> DataFrame:
    """Attach each enrolment's current row to its consumption.

    By default consumption drives (a left join: consumption without an enrolment still gets its
    aggregates, docs/behaviour.md §5.1), as for sync requests. With ``every_enrolment`` the
    enrolments drive (the backfill): every enrolment gets a row, with null ``contents`` when it has
    no consumption. ``enrolments`` has the table's columns (``userid, courseid, batchid, status,
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
    return progress.join(F.broadcast(structure), "courseId", "left").withColumns(
        _structure_columns()
    )


@built_once
def _structure_columns() -> dict[str, Column]:
    leaves = F.coalesce(F.col("leafnodes"), empty_ids())
    route = (
        F.when(F.col("structureProblem").isNotNull(), F.lit(BROKEN))
        .when(F.size(leaves) > 0, F.lit(OK))
        .when(F.col("collectionStatus") == RETIRED, F.lit(RETIRED_COURSE))
        .otherwise(F.lit(UNRESOLVED))
    )
    return {
        "leafnodes": leaves,
        "optionalnodes": F.coalesce(F.col("optionalnodes"), empty_ids()),
        "required": F.coalesce(F.col("required"), empty_ids()),
        "units": F.coalesce(F.col("units"), F.array().cast(_UNITS)),
        ROUTE: route,
    }


_UNITS = ArrayType(UNIT_STRUCTURE_SCHEMA)


def required_leaves(node: Column, *, exclude_optional_nodes: bool) -> Column:
    """Leaves of a node (the course row, or a unit of ``units``) a learner must complete:
    leafnodes minus optionalnodes when excluding (AAU rule), else all leafnodes (the original ER
    rule). The difference is computed once per course (``core.structure``)."""
    return node["required"] if exclude_optional_nodes else node["leafnodes"]


def _completed_count(required: Column) -> Column:
    return F.size(F.array_intersect(required, F.col("completed")))


def units_above_contents() -> Column:
    """The course's units that are an ancestor of a consumed content (of any status)."""
    return F.filter(F.col("units"), lambda u: F.arrays_overlap(u["under"], F.col("contents")))


def with_progress(
    enriched: DataFrame, *, exclude_optional_nodes: bool, module_aggs_enabled: bool = True
) -> DataFrame:
    """Course and unit completedCount of every enrolment, in one pass over its row.

    Course (route ``ok`` only, else null): ``requiredCount``, ``completedCount`` over the
    required leaves, and ``complete`` iff completedCount >= requiredCount, so a course whose
    leaves are all optional completes at once (docs/behaviour.md §10.5). Units (routes ``ok`` and
    ``retired``, docs/behaviour.md §7.5): ``unitCounts``, one ``(unitId, completedCount)`` per unit
    above a consumed content; a unit without a ``leafnodes`` key counts 0, as in the original. Empty
    when ``module_aggs_enabled`` is off.
    """
    return enriched.withColumns(_progress_columns(exclude_optional_nodes, module_aggs_enabled))


@built_once
def _progress_columns(exclude_optional_nodes: bool, module_aggs_enabled: bool) -> dict[str, Column]:
    course = F.struct(F.col("leafnodes").alias("leafnodes"), F.col("required").alias("required"))
    required = required_leaves(course, exclude_optional_nodes=exclude_optional_nodes)
    is_ok = F.col(ROUTE) == OK
    completed_count = _completed_count(required)
    unit_counts = F.transform(
        units_above_contents(),
        lambda u: F.struct(
            u["unitId"].alias("unitId"),
            _completed_count(
                required_leaves(u, exclude_optional_nodes=exclude_optional_nodes)
            ).alias(COMPLETED_COUNT),
        ),
    )
    no_units = F.array().cast(UNIT_COUNTS)
    if module_aggs_enabled:
        with_units = F.col(ROUTE).isin(OK, RETIRED_COURSE)
        unit_counts = F.when(with_units, unit_counts).otherwise(no_units)
    else:
        unit_counts = no_units
    return {
        "requiredCount": F.when(is_ok, F.size(required)),
        COMPLETED_COUNT: F.when(is_ok, completed_count),
        "complete": F.when(is_ok, completed_count >= F.size(required)),
        "unitCounts": unit_counts,
    }


UNIT_COUNTS = ArrayType(
    StructType(
        [
            StructField("unitId", StringType(), False),
            StructField(COMPLETED_COUNT, IntegerType(), False),
        ]
    )
)


# What the outputs read of an enrolment's row: everything else (the structure, the consumed
# ids) is needed only to compute the progress, so it is not carried further.
RECONCILED_COLUMNS = [
    *ENROLMENT_KEY,
    ROUTE,
    "collectionStatus",
    "structureProblem",
    "consumedContents",  # only for failed payloads: null on the other routes
    "contentstatus",
    "enrolled",
    "enrolmentStatus",
    "enrolmentProgress",
    "enrolmentContentStatus",
    "enrolmentCompletedOn",
    "requiredCount",
    COMPLETED_COUNT,
    "complete",
    "unitCounts",
]


def to_reconciled(
    enriched: DataFrame, *, exclude_optional_nodes: bool, module_aggs_enabled: bool = True
) -> DataFrame:
    """One row per enrolment: its progress and what the outputs read (``RECONCILED_COLUMNS``)."""
    return with_progress(
        enriched,
        exclude_optional_nodes=exclude_optional_nodes,
        module_aggs_enabled=module_aggs_enabled,
    ).select(*_reconciled_columns())


@built_once
def _reconciled_columns() -> list[Column]:
    failing = F.col(ROUTE).isin(UNRESOLVED, BROKEN)
    return [
        F.when(failing, F.col(c)).alias(c) if c == "consumedContents" else F.col(c)
        for c in RECONCILED_COLUMNS
    ]


def compute_course_progress(reconciled: DataFrame) -> DataFrame:
    """The enrolments whose course has leafnodes (route ``ok``), with their course progress.

    ``reconciled`` is ``with_progress``'s output (``requiredCount, completedCount, complete``).
    """
    return reconciled.where(F.col(ROUTE) == OK)


def compute_unit_aggregates(reconciled: DataFrame) -> DataFrame:
    """completedCount of every unit above a consumed content, one row each: ``userId,
    courseId, batchId, unitId, completedCount`` (from ``with_progress``'s ``unitCounts``)."""
    return reconciled.select(*ENROLMENT_KEY, F.inline("unitCounts"))


def to_activity_agg_rows(
    course_progress: DataFrame, unit_aggregates: DataFrame | None, now: datetime
) -> DataFrame:
    """``user_activity_agg`` rows: course and unit completedCount as maps to append.

    Unit rows keep ``activity_type='Course'`` because readers expect it (docs/behaviour.md §10.1).
    """

    def rows(df: DataFrame, activity_id: str) -> DataFrame:
        return df.withColumn(_NOW, _timestamp(now)).select(*_activity_agg_columns(activity_id))

    course_rows = rows(course_progress, "courseId")
    if unit_aggregates is None:
        return course_rows
    return course_rows.unionByName(rows(unit_aggregates, "unitId"))


# The batch's time as a column, so the expressions that use it are built once.
_NOW = "_now"


def _timestamp(now: datetime) -> Column:
    return F.lit(now).cast("timestamp")


@built_once
def _activity_agg_columns(activity_id: str) -> list[Column]:
    return [
        F.lit(COURSE_ACTIVITY_TYPE).alias("activity_type"),
        F.col(activity_id).alias("activity_id"),
        F.col("userId").alias("user_id"),
        F.concat(F.lit(CONTEXT_PREFIX), F.col("batchId")).alias("context_id"),
        F.create_map(F.lit(COMPLETED_COUNT), F.col(COMPLETED_COUNT).cast("double")).alias(
            "aggregates"
        ),
        F.create_map(F.lit(COMPLETED_COUNT), F.col(_NOW)).alias("agg_last_updated"),
    ]


def _same_map(a: Column, b: Column) -> Column:
    """Maps cannot be compared with ``=``; compare their sorted entries (null: not the same)."""
    return F.coalesce(
        F.array_sort(F.map_entries(a)) == F.array_sort(F.map_entries(b)), F.lit(False)
    )


def to_enrolment_changes(
    course_progress: DataFrame, *, filter_processed_enrolments: bool, now: datetime
) -> DataFrame:
    """The new state of every existing enrolment, next to its current one (docs/behaviour.md
    §5.4-§5.6).

    No row for a missing enrolment. With ``filter_processed_enrolments`` completed enrolments
    (status 2) are left alone; without it they are recomputed but never downgraded and their
    ``completedon`` never moves (docs/design.md §3.4). ``completedon`` is set only when an enrolment
    completes now (null: leave the column as it is). ``changed`` says whether status, progress
    or contentstatus differ from the table; ``newlyCompleted`` routes the AUDIT and certificate
    events. Before-values: ``statusBefore``, ``progressBefore``, ``completedonBefore``.
    """
    kept, columns = _enrolment_change_columns(filter_processed_enrolments)
    rows = course_progress.where(kept).withColumn(_NOW, _timestamp(now))
    return to_table_key_names(rows.select(*columns))


@built_once
def _enrolment_change_columns(filter_processed_enrolments: bool) -> tuple[Column, list[Column]]:
    """Which enrolments are recomputed, and their columns (over ``_now``)."""
    current = F.coalesce(F.col("enrolmentStatus"), F.lit(NOT_STARTED))
    kept = F.col("enrolled")
    if filter_processed_enrolments:
        kept = kept & (current != COMPLETED)
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
    return kept, [
        *[F.col(k) for k in ENROLMENT_KEY],
        status.alias("status"),
        progress.alias("progress"),
        F.col("contentstatus"),
        F.when(newly_completed, F.col(_NOW)).alias("completedon"),
        F.col(_NOW).alias("datetime"),
        newly_completed.alias("newlyCompleted"),
        changed.alias("changed"),
        F.col("enrolmentStatus").alias("statusBefore"),
        F.col("enrolmentProgress").alias("progressBefore"),
        F.col("enrolmentCompletedOn").alias("completedonBefore"),
    ]


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
