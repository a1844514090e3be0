"""Write only what changes: an aggregate row is kept when the table's completedCount differs."""

from __future__ import annotations

from chispa import assert_df_equality
from pyspark.sql import functions as F

from enrolment_reconciliation.core.changes import filter_changed_aggregates
from tests.helpers import literal_frame

AGGREGATES = (
    "activity_type string, activity_id string, user_id string, context_id string,"
    " aggregates map<string, double>"
)


def test_rows_the_table_holds_with_the_same_count_are_dropped_others_kept(spark):
    computed = literal_frame(
        spark,
        [
            ("Course", "C", "u1", "cb:b", {"completedCount": 2.0}),  # held, same: dropped
            ("Course", "C", "u2", "cb:b", {"completedCount": 3.0}),  # held, differs: kept
            ("Course", "C", "u3", "cb:b", {"completedCount": 1.0}),  # not held: kept
            ("Course", "U1", "u1", "cb:b", {"completedCount": 0.0}),  # held without the key
            ("Course", "U2", "u1", "cb:b", {"completedCount": 1.0}),  # other keys not compared
        ],
        AGGREGATES,
    )
    current = literal_frame(
        spark,
        [
            ("Course", "C", "u1", "cb:b", {"completedCount": 2.0, "score:x": 9.0}),
            ("Course", "C", "u2", "cb:b", {"completedCount": 2.0}),
            ("Course", "U1", "u1", "cb:b", {"score:x": 1.0}),
            ("Course", "U2", "u1", "cb:b", {"completedCount": 1.0, "score:x": 5.0}),
            ("Course", "C", "u9", "cb:b", {"completedCount": 4.0}),  # not computed: no row
        ],
        AGGREGATES,
    )
    kept = filter_changed_aggregates(computed, current)
    expected = literal_frame(
        spark,
        [
            ("Course", "C", "u2", "cb:b", {"completedCount": 3.0}),
            ("Course", "C", "u3", "cb:b", {"completedCount": 1.0}),
            ("Course", "U1", "u1", "cb:b", {"completedCount": 0.0}),
        ],
        AGGREGATES,
    )

    # maps cannot be ordered: compare them as their sorted entries
    def comparable(df):
        return df.withColumn("aggregates", F.array_sort(F.map_entries("aggregates")))

    assert_df_equality(
        comparable(kept), comparable(expected), ignore_row_order=True, ignore_nullable=True
    )
