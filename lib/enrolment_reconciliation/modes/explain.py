"""``explain`` mode: why is this learner not complete? Writes nothing.

Reads one enrolment exactly as a sync would (same reader, same batch function, same core
frames), then prints the course and each unit leaf by leaf (required, completed, missing,
optional left out) and what a sync would change, human-readable or as JSON.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from enrolment_reconciliation.batch.pipeline import BatchResources, reconcile_batch
from enrolment_reconciliation.batch.read import read_requested
from enrolment_reconciliation.core.explanation import COURSE_NODE, to_progress_explanation
from enrolment_reconciliation.modes.enrolment_state import (
    enrolment_state,
    found_parts,
    missing_parts,
)
from enrolment_reconciliation.modes.sync import sync_request_frame
from enrolment_reconciliation.runtime.config import JobConfig


def explain_enrolment(
    spark: SparkSession, cfg: JobConfig, user: str, course: str, batch: str
) -> dict[str, Any]:
    """The explanation of one enrolment as plain data (one enrolment: a few rows)."""
    raw = sync_request_frame(spark, user, course, batch)
    result = reconcile_batch(
        spark, read_requested(spark, raw, cfg), cfg, BatchResources.from_config(cfg)
    )
    try:
        outputs = result.outputs
        nodes = [
            r.asDict()
            for r in to_progress_explanation(
                outputs.enriched, exclude_optional_nodes=cfg.activity.exclude_optional_nodes
            )
            .orderBy(F.col("nodeType") != COURSE_NODE, "nodeId")
            .collect()
        ]
        change = outputs.enrolment_changes.collect()
        aggregates = {
            r.activity_id: r.aggregates["completedCount"]
            for r in outputs.activity_aggregates.collect()
        }
        failed = [r.reason for r in outputs.failed.collect()]
        counters = result.counters
    finally:
        result.release()
    current = enrolment_state(cfg, user, course, batch)
    course_node = next((n for n in nodes if n["nodeType"] == COURSE_NODE), None)
    found = found_parts(counters, current)
    would = None
    if change:
        c = change[0]
        would = {
            "status": [c.statusBefore, c.status],
            "progress": [c.progressBefore, c.progress],
            "completes": bool(c.newlyCompleted),
            "changes": bool(c.changed),
        }
    return {
        "enrolment": {"userId": user, "courseId": course, "batchId": batch},
        "found": found,
        "missing": missing_parts(user, course, batch, found),
        "current": current,
        "route": course_node["route"] if course_node else None,
        "problem": failed[0] if failed else None,
        "course": course_node,
        "units": [n for n in nodes if n["nodeType"] != COURSE_NODE],
        "syncWouldWrite": {"enrolment": would, "completedCount": aggregates},
        "excludeOptionalNodes": cfg.activity.exclude_optional_nodes,
    }


def _ids(values: list[str] | None) -> str:
    return ", ".join(values) if values else "-"


def render(explanation: dict[str, Any]) -> str:
    """The explanation for people (support staff)."""
    e = explanation["enrolment"]
    lines = [f"Enrolment {e['userId']} / course {e['courseId']} / batch {e['batchId']}"]
    lines += [f"  NOT FOUND: {missing}" for missing in explanation["missing"]]
    current = explanation["current"]["enrolment"]
    if current is None:
        lines.append("  no user_enrolments row: a sync writes aggregates only")
    else:
        lines.append(
            f"  now: status {current['status']}, progress {current['progress']},"
            f" completedon {current['completedon'] or '-'}"
        )
    if explanation["problem"]:
        lines.append(f"  cannot be computed: {explanation['problem']}")
    course = explanation["course"]
    if course is None:
        lines.append("  no consumption rows: nothing to compute")
        return "\n".join(lines)
    rule = "optional leaves excluded" if explanation["excludeOptionalNodes"] else "all leaves"
    for node in [course, *explanation["units"]]:
        title = "course" if node is course else f"unit {node['nodeId']}"
        verdict = "complete" if node["complete"] else "not complete"
        lines += [
            f"  {title}: {node['completedCount']} of {node['requiredCount']} required leaves"
            f" ({verdict}; {rule})",
            f"    required:          {_ids(node['required'])}",
            f"    completed:         {_ids(node['completedRequired'])}",
            f"    missing:           {_ids(node['missing'])}",
            f"    optional left out: {_ids(node['optionalLeftOut'])}",
        ]
    would = explanation["syncWouldWrite"]["enrolment"]
    if would:
        if would["changes"]:
            lines.append(
                f"  a sync would set status {would['status'][0]} -> {would['status'][1]},"
                f" progress {would['progress'][0]} -> {would['progress'][1]}"
                + (" and issue the certificate" if would["completes"] else "")
            )
        else:
            lines.append("  a sync would change nothing in user_enrolments")
    counts = explanation["syncWouldWrite"]["completedCount"]
    if counts:
        shown = ", ".join(f"{k}={v:g}" for k, v in sorted(counts.items()))
        lines.append(f"  a sync would write completedCount: {shown}")
    return "\n".join(lines)
