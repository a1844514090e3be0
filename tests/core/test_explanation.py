"""Why is a learner not complete: per enrolment and node, the required, completed and missing
leaves, and the optional ones left out."""

from __future__ import annotations

from enrolment_reconciliation.core.explanation import (
    COURSE_NODE,
    UNIT_NODE,
    to_progress_explanation,
)
from enrolment_reconciliation.core.progress import with_course_structure
from tests.helpers import UNIT_COURSE_KEYS, progress, structure

KEYS = UNIT_COURSE_KEYS
ROWS = [("u1", "C", "b", "L1", 2), ("u1", "C", "b", "L3", 2), ("u1", "C", "b", "L2", 1)]
FIELDS = ["nodeType", "nodeId", "leafnodes", "required", "completedRequired", "missing"]


def explained(spark, *, exclude: bool) -> dict[tuple[str, str], tuple]:
    enriched = with_course_structure(progress(spark, ROWS), structure(spark, KEYS))
    rows = to_progress_explanation(enriched, exclude_optional_nodes=exclude).collect()
    return {
        (r.nodeType, r.nodeId): (*[r[f] for f in FIELDS[2:]], r.optionalLeftOut, r.complete)
        for r in rows
    }


def test_the_course_and_each_unit_above_a_consumed_content_leaf_by_leaf(spark):
    assert explained(spark, exclude=True) == {
        (COURSE_NODE, "C"): (["L1", "L2", "L3"], ["L1", "L2"], ["L1"], ["L2"], ["L3"], False),
        (UNIT_NODE, "U"): (["L1", "L3"], ["L1"], ["L1"], [], ["L3"], True),
    }
    # optional leaves count when their exclusion is off, and none is "left out"
    every = ["L1", "L2", "L3"]
    assert explained(spark, exclude=False) == {
        (COURSE_NODE, "C"): (every, every, ["L1", "L3"], ["L2"], [], False),
        (UNIT_NODE, "U"): (["L1", "L3"], ["L1", "L3"], ["L1", "L3"], [], [], True),
    }
