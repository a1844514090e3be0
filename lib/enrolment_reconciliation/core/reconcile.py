"""The whole reconciliation as one pure composition of the core transformations.

Inputs are DataFrames that a reader produced for one batch (see ``inputs``): the enrolments to
reconcile with their consumption and current state, the course structures, and for the stream
the parsed requests. Outputs are the frames to write and publish. No I/O here, so a notebook or
a test can call it with literal frames.

Example (notebook)::

    result = reconcile(BatchInputs(progress, structure), ReconcileSettings(), now=utc_now_ms())
    result.enrolment_updates.show()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import DataFrame

from enrolment_reconciliation.core.changes import filter_changed_aggregates
from enrolment_reconciliation.core.events import to_completion_events, to_structure_failures
from enrolment_reconciliation.core.progress import (
    compute_course_progress,
    compute_unit_aggregates,
    to_activity_agg_rows,
    to_enrolment_changes,
    to_enrolment_updates,
    to_reconciled,
    with_course_structure,
)
from enrolment_reconciliation.core.requests import to_request_failures


@dataclass(frozen=True)
class ReconcileSettings:
    """The behaviour switches of the job, as plain values (from JobConfig in the entry points).

    ``write_only_changes`` (the backfill's mode) drops enrolment rows whose status, progress and
    contentstatus equal the table's, and aggregate rows whose completedCount does (this needs
    ``BatchInputs.current_aggregates``).
    """

    exclude_optional_nodes: bool = True
    module_aggs_enabled: bool = True
    filter_processed_enrolments: bool = True
    write_only_changes: bool = False


@dataclass(frozen=True)
class BatchInputs:
    """What one batch reconciles.

    ``progress``: one row per enrolment (``progress.to_user_consumption`` then
    ``with_enrolment_state``). ``structure``: one row per course
    (``schemas.COURSE_STRUCTURE_SCHEMA``). ``requests``: the parsed sync requests, when the
    batch comes from requests (their failures are outputs too). ``current_aggregates``: the
    table's aggregate rows, to write only what changes (``current_aggregates_by_key``: read by
    key, a connector direct join, rather than scanned).
    """

    progress: DataFrame
    structure: DataFrame
    requests: DataFrame | None = None
    current_aggregates: DataFrame | None = None
    current_aggregates_by_key: bool = False


@dataclass(frozen=True)
class Reconciliation:
    """What one batch produces: rows to write, events to publish, failures, and the route taken.

    ``enrolment_changes`` holds every existing enrolment's new state beside its current one
    (for reports); ``all_aggregates`` every aggregate row before unchanged ones are dropped;
    ``reconciled`` is the one row per enrolment every output is a projection of;
    ``enriched`` (the enrolments with their course structure) and ``course_progress`` are kept
    for explanations and notebooks.
    """

    activity_aggregates: DataFrame
    all_aggregates: DataFrame
    enrolment_updates: DataFrame
    enrolment_changes: DataFrame
    events: DataFrame
    failed: DataFrame
    course_progress: DataFrame
    reconciled: DataFrame
    enriched: DataFrame


def reconcile(
    inputs: BatchInputs,
    settings: ReconcileSettings,
    *,
    now: datetime,
    materialise: Callable[[DataFrame], DataFrame] = lambda df: df,
) -> Reconciliation:
    """Compute every output of a batch from its inputs (docs/behaviour.md §4-§7, docs/design.md §3).

    A course without leafnodes whose collection is Retired gets no course row, no enrolment
    update and no events, but its unit rows are still written; any other course without a
    usable structure sends its enrolments to the failed frame with a reason, and nothing else is
    written for them. ``materialise`` is applied to the frames every output derives from (the
    pipeline materialises them once, so each output is a cheap projection).
    """
    enriched = with_course_structure(inputs.progress, inputs.structure)
    reconciled = materialise(
        to_reconciled(
            enriched,
            exclude_optional_nodes=settings.exclude_optional_nodes,
            module_aggs_enabled=settings.module_aggs_enabled,
        )
    )
    course_progress = compute_course_progress(reconciled)
    unit_aggregates = compute_unit_aggregates(reconciled) if settings.module_aggs_enabled else None
    all_aggregates = to_activity_agg_rows(course_progress, unit_aggregates, now)
    aggregates = all_aggregates
    if settings.write_only_changes:
        if inputs.current_aggregates is None:
            raise ValueError("write_only_changes needs BatchInputs.current_aggregates")
        aggregates = materialise(
            filter_changed_aggregates(
                all_aggregates,
                inputs.current_aggregates,
                by_key=inputs.current_aggregates_by_key,
            )
        )
    changes = to_enrolment_changes(
        course_progress,
        filter_processed_enrolments=settings.filter_processed_enrolments,
        now=now,
    )
    updates = to_enrolment_updates(changes, only_changed=settings.write_only_changes)
    failed = to_structure_failures(reconciled)
    if inputs.requests is not None:
        failed = to_request_failures(inputs.requests).unionByName(failed)
    return Reconciliation(
        activity_aggregates=aggregates,
        all_aggregates=all_aggregates,
        enrolment_updates=updates,
        enrolment_changes=changes,
        events=to_completion_events(updates, now),
        failed=failed,
        course_progress=course_progress,
        reconciled=reconciled,
        enriched=enriched,
    )
