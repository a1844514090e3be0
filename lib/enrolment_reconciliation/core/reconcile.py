"""The whole reconciliation as one pure composition of the core transformations.

Inputs are DataFrames that the I/O layer produced for one batch (parsed requests, the batch's
consumption rows grouped per enrolment, the relation-cache frames, the search statuses of
courses without leafnodes, the current enrolment rows); outputs are the frames to write and
publish. No I/O here, so a notebook or a test can call it with literal frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from enrolment_reconciliation.core.events import (
    to_completion_events,
    to_missing_leafnodes_failures,
)
from enrolment_reconciliation.core.progress import (
    compute_course_progress,
    compute_unit_aggregates,
    filter_missing_leafnodes,
    to_activity_agg_rows,
    to_enrolment_updates,
    with_collection_status,
)
from enrolment_reconciliation.core.requests import to_request_failures
from enrolment_reconciliation.schemas import ENROLMENT_KEY


@dataclass(frozen=True)
class ReconcileSettings:
    """The behaviour switches of the job, as plain values (from JobConfig in the entry points)."""

    exclude_optional_nodes: bool = True
    module_aggs_enabled: bool = True
    filter_processed_enrolments: bool = True


@dataclass(frozen=True)
class Reconciliation:
    """What one batch produces: rows to write, events to publish, failures, and the route taken.

    ``course_progress`` and ``missing_leafnodes`` are kept for counters and for notebooks.
    """

    activity_aggregates: DataFrame
    enrolment_updates: DataFrame
    events: DataFrame
    failed: DataFrame
    course_progress: DataFrame
    missing_leafnodes: DataFrame


def reconcile(
    requests: DataFrame,
    user_consumption: DataFrame,
    course_nodes: DataFrame,
    unit_nodes: DataFrame,
    ancestors: DataFrame,
    collection_status: DataFrame,
    enrolments: DataFrame,
    *,
    settings: ReconcileSettings,
    now: datetime,
) -> Reconciliation:
    """Compute every output of a batch from its inputs (spec.md §4-§7, design.md §3).

    A course without leafnodes whose collection is Retired gets no course row, no enrolment
    update and no events, but its unit rows are still written; any other status sends the
    request to the failed frame with a reason and nothing else is written for it.
    """
    course_progress = compute_course_progress(
        user_consumption, course_nodes, exclude_optional_nodes=settings.exclude_optional_nodes
    )
    missing = with_collection_status(
        filter_missing_leafnodes(user_consumption, course_nodes), collection_status
    )
    unresolved = missing.where(~F.col("retired"))
    failed = to_request_failures(requests).unionByName(to_missing_leafnodes_failures(unresolved))

    unit_aggregates = None
    if settings.module_aggs_enabled:
        resolvable = user_consumption.join(
            unresolved.select(*ENROLMENT_KEY), ENROLMENT_KEY, "left_anti"
        )
        unit_aggregates = compute_unit_aggregates(
            resolvable,
            ancestors,
            unit_nodes,
            exclude_optional_nodes=settings.exclude_optional_nodes,
        )
    activity_aggregates = to_activity_agg_rows(course_progress, unit_aggregates, now)
    enrolment_updates = to_enrolment_updates(
        course_progress,
        enrolments,
        filter_processed_enrolments=settings.filter_processed_enrolments,
        now=now,
    )
    return Reconciliation(
        activity_aggregates=activity_aggregates,
        enrolment_updates=enrolment_updates,
        events=to_completion_events(enrolment_updates, now),
        failed=failed,
        course_progress=course_progress,
        missing_leafnodes=missing,
    )
