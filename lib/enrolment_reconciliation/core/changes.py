"""Write only what changes: compare recomputed aggregates with what the table holds.

A nightly backfill over unchanged data must cost no writes (issue: "an unchanged row costs no
write"). Enrolments carry their own comparison (``progress.to_enrolment_changes``); aggregate
rows are compared here with the current ``user_activity_agg`` rows.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from enrolment_reconciliation.core.schemas import ACTIVITY_AGG_KEY, COMPLETED_COUNT


def filter_changed_aggregates(
    aggregates: DataFrame, current: DataFrame, *, by_key: bool = False
) -> DataFrame:
    """Keep the aggregate rows whose completedCount differs from the table's (or has no row).

    ``current`` has the table's key columns and ``aggregates``. A scanned table is compared by
    one left join. With ``by_key`` (``current`` is a connector relation read by direct join:
    one keyed read per computed row) the held values are fetched with an inner join first: on
    a *left* direct join the connector applies the filters Spark infers for the table's side
    (``activity_type <=> 'Course'``) after the join, which would drop exactly the rows that
    have no table row yet. Other keys of the map (``score:*``, ...) are not compared: they
    belong to other jobs.
    """
    held_count = F.col("aggregates")[COMPLETED_COUNT].alias("_heldCount")
    if by_key:
        held = (
            aggregates.select(*ACTIVITY_AGG_KEY)
            .join(current, ACTIVITY_AGG_KEY, "inner")
            .select(*ACTIVITY_AGG_KEY, held_count)
        )
    else:
        held = current.select(*ACTIVITY_AGG_KEY, held_count)
    new_count = F.col("aggregates")[COMPLETED_COUNT]
    return (
        aggregates.join(held, ACTIVITY_AGG_KEY, "left")
        .where(F.col("_heldCount").isNull() | (F.col("_heldCount") != new_count))
        .drop("_heldCount")
    )
