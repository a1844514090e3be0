"""Why is a learner not complete? The course and unit progress, leaf by leaf.

The same frames and rules as the aggregates (``progress.required_leaves``,
``progress.units_above_contents``)
laid out for people: per enrolment and node (the course, then every unit above a consumed
content), the leaves, the required ones, the completed ones, the missing ones and the optional
ones left out.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from enrolment_reconciliation.core.expressions import empty_ids
from enrolment_reconciliation.core.progress import ROUTE, required_leaves, units_above_contents
from enrolment_reconciliation.core.schemas import ENROLMENT_KEY

COURSE_NODE, UNIT_NODE = "course", "unit"


def to_progress_explanation(enriched: DataFrame, *, exclude_optional_nodes: bool) -> DataFrame:
    """One row per enrolment and node: ``nodeType`` (course | unit), ``nodeId``, ``leafnodes``,
    ``required``, ``completedRequired``, ``missing``, ``optionalLeftOut``, ``requiredCount``,
    ``completedCount``, ``complete``, and the enrolment's ``route``, ``collectionStatus`` and
    ``structureProblem`` (why a course cannot be computed at all).

    ``enriched`` is ``progress.with_course_structure``'s output (``Reconciliation.enriched``).
    """
    context = [ROUTE, "collectionStatus", "structureProblem", "completed"]
    course = enriched.select(
        *ENROLMENT_KEY,
        *context,
        F.lit(COURSE_NODE).alias("nodeType"),
        F.col("courseId").alias("nodeId"),
        F.coalesce("leafnodes", empty_ids()).alias("leafnodes"),
        F.coalesce("optionalnodes", empty_ids()).alias("optionalnodes"),
        F.coalesce("required", empty_ids()).alias("required"),
    )
    units = enriched.select(
        *ENROLMENT_KEY, *context, F.explode(units_above_contents()).alias("unit")
    ).select(
        *ENROLMENT_KEY,
        *context,
        F.lit(UNIT_NODE).alias("nodeType"),
        F.col("unit.unitId").alias("nodeId"),
        F.col("unit.leafnodes").alias("leafnodes"),
        F.col("unit.optionalnodes").alias("optionalnodes"),
        F.col("unit.required").alias("required"),
    )
    nodes = course.unionByName(units)
    node = F.struct(F.col("leafnodes").alias("leafnodes"), F.col("required").alias("required"))
    required = required_leaves(node, exclude_optional_nodes=exclude_optional_nodes)
    left_out = (
        F.array_intersect("leafnodes", "optionalnodes") if exclude_optional_nodes else empty_ids()
    )
    return nodes.select(
        *ENROLMENT_KEY,
        "nodeType",
        "nodeId",
        F.array_sort("leafnodes").alias("leafnodes"),
        F.array_sort(required).alias("required"),
        F.array_sort(F.array_intersect(required, F.col("completed"))).alias("completedRequired"),
        F.array_sort(F.array_except(required, F.col("completed"))).alias("missing"),
        F.array_sort(left_out).alias("optionalLeftOut"),
        F.size(required).alias("requiredCount"),
        F.size(F.array_intersect(required, F.col("completed"))).alias("completedCount"),
        (F.size(F.array_except(required, F.col("completed"))) == 0).alias("complete"),
        ROUTE,
        "collectionStatus",
        "structureProblem",
    )
