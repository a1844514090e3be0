"""Whole-frame tests of each progress transformation (docs/behaviour.md §2.3, §4)."""

from __future__ import annotations

from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from enrolment_reconciliation.core.progress import (
    compute_course_progress,
    compute_unit_aggregates,
    to_activity_agg_rows,
    to_user_consumption,
    with_consumption_defaults,
    with_course_structure,
    with_progress,
)
from enrolment_reconciliation.core.schemas import ACTIVITY_AGG_SCHEMA, CONSUMPTION_SCHEMA
from tests.helpers import (
    NOW,
    NOW_NAIVE,
    UNIT_COURSE_KEYS,
    consumption,
    literal_frame,
    progress,
    structure,
)

IDS = ArrayType(StringType(), True)


def _eq(actual, expected):
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_null_status_reads_as_in_progress_and_null_counts_as_zero(spark):
    rows = [("u", "C", "b", "L1", None, None, None), ("u", "C", "b", "L2", 0, 3, 1)]
    expected = literal_frame(
        spark, [("u", "C", "b", "L1", 1, 0, 0), ("u", "C", "b", "L2", 0, 3, 1)], CONSUMPTION_SCHEMA
    )
    _eq(with_consumption_defaults(consumption(spark, rows)), expected)


def test_consumption_is_grouped_per_enrolment_with_completed_and_contentstatus(spark):
    rows = [
        ("u", "C", "b", "L2", 2, 1, 1),
        ("u", "C", "b", "L1", 1, 4, 0),
        ("u", "C", "b2", "L1", 2, 1, 1),
    ]
    actual = to_user_consumption(with_consumption_defaults(consumption(spark, rows))).select(
        "userId",
        "courseId",
        "batchId",
        "contents",
        "completed",
        F.map_entries("contentstatus").alias("contentstatus"),
    )
    entry = StructType([StructField("key", StringType()), StructField("value", IntegerType())])
    schema = StructType(
        [
            StructField("userId", StringType()),
            StructField("courseId", StringType()),
            StructField("batchId", StringType()),
            StructField("contents", IDS),
            StructField("completed", IDS),
            StructField("contentstatus", ArrayType(entry)),
        ]
    )
    expected = literal_frame(
        spark,
        [
            ("u", "C", "b", ["L1", "L2"], ["L2"], [("L1", 1), ("L2", 2)]),
            ("u", "C", "b2", ["L1"], ["L1"], [("L1", 2)]),
        ],
        schema,
    )
    _eq(actual, expected)


PROGRESS_SCHEMA = StructType(
    [
        StructField("userId", StringType()),
        StructField("courseId", StringType()),
        StructField("batchId", StringType()),
        StructField("requiredCount", IntegerType()),
        StructField("completedCount", IntegerType()),
        StructField("complete", BooleanType()),
    ]
)
KEYS = {**UNIT_COURSE_KEYS, "D:L9:ancestors": {"D"}}
ROWS = [
    ("u1", "C", "b", "L1", 2),
    ("u1", "C", "b", "L2", 2),
    ("u2", "C", "b", "L1", 2),
    ("u2", "C", "b", "L3", 2),
    ("u3", "D", "b", "L9", 2),  # course D has no leafnodes key
]


def _enriched(spark):
    return with_course_structure(progress(spark, ROWS), structure(spark, KEYS, courses={"D"}))


def _progress(spark, exclude: bool):
    reconciled = with_progress(_enriched(spark), exclude_optional_nodes=exclude)
    return compute_course_progress(reconciled).select(*PROGRESS_SCHEMA.fieldNames())


def test_course_progress_counts_required_leaves_with_optional_excluded(spark):
    expected = literal_frame(
        spark, [("u1", "C", "b", 2, 2, True), ("u2", "C", "b", 2, 1, False)], PROGRESS_SCHEMA
    )
    _eq(_progress(spark, exclude=True), expected)


def test_course_progress_counts_all_leaves_when_optional_exclusion_is_off(spark):
    expected = literal_frame(
        spark, [("u1", "C", "b", 3, 2, False), ("u2", "C", "b", 3, 2, False)], PROGRESS_SCHEMA
    )
    _eq(_progress(spark, exclude=False), expected)


def test_each_enrolment_takes_the_route_its_course_structure_allows(spark):
    keys = {**KEYS, "E:E:leafnodes": {"X"}}
    rows = [*ROWS, ("u4", "R", "b", "L1", 2), ("u5", "E", "b", "X", 2)]
    enriched = with_course_structure(
        progress(spark, rows),
        structure(
            spark,
            keys,
            {"D": "Live", "R": "Retired"},
            faults={"E:X:ancestors": "a string"},
        ),
    )
    routes = {(r.userId, r.route, r.structureProblem) for r in enriched.collect()}
    assert routes == {
        ("u1", "ok", None),
        ("u2", "ok", None),
        ("u3", "unresolved", None),  # no leafnodes, published
        ("u4", "retired", None),
        ("u5", "broken", "relation cache key E:X:ancestors holds a string, not a set"),
    }


def test_unit_aggregates_cover_every_ancestor_unit_of_a_consumed_content(spark):
    schema = StructType(
        [
            StructField("userId", StringType()),
            StructField("courseId", StringType()),
            StructField("batchId", StringType()),
            StructField("unitId", StringType()),
            StructField("completedCount", IntegerType()),
        ]
    )
    for exclude, u2 in ((True, 1), (False, 2)):
        reconciled = with_progress(_enriched(spark), exclude_optional_nodes=exclude)
        actual = compute_unit_aggregates(reconciled)
        expected = literal_frame(
            spark, [("u1", "C", "b", "U", 1), ("u2", "C", "b", "U", u2)], schema
        )
        _eq(actual, expected)


def test_activity_agg_rows_are_course_type_with_batch_context_and_completedcount_maps(spark):
    course = literal_frame(
        spark,
        [("u1", "C", "b", 2)],
        "userId string, courseId string, batchId string, completedCount int",
    )
    units = literal_frame(
        spark,
        [("u1", "C", "b", "U", 1)],
        "userId string, courseId string, batchId string, unitId string, completedCount int",
    )
    actual = to_activity_agg_rows(course, units, NOW)
    expected = literal_frame(
        spark,
        [
            ("Course", "C", "u1", "cb:b", {"completedCount": 2.0}, {"completedCount": NOW_NAIVE}),
            ("Course", "U", "u1", "cb:b", {"completedCount": 1.0}, {"completedCount": NOW_NAIVE}),
        ],
        ACTIVITY_AGG_SCHEMA,
    )
    as_entries = [
        "activity_type",
        "activity_id",
        "user_id",
        "context_id",
        F.map_entries("aggregates").alias("aggregates"),
        F.map_entries("agg_last_updated").alias("agg_last_updated"),
    ]
    _eq(actual.select(*as_entries), expected.select(*as_entries))
    assert DoubleType() == actual.schema["aggregates"].dataType.valueType
    assert LongType() != actual.schema["agg_last_updated"].dataType.valueType
