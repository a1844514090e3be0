"""The counts of a batch from its declaration: every label a formula reads is given by a
declared frame, and the counters follow from the rows per label and the frames counted."""

from __future__ import annotations

from enrolment_reconciliation.batch.tally import (
    AGGREGATES,
    COMPLETING,
    COMPUTED,
    FORMULAS,
    KEYS,
    RECOMPUTED,
    TALLIED,
    UPDATES,
    counters_from,
    request_label,
)
from enrolment_reconciliation.core.counters import Counter
from enrolment_reconciliation.core.progress import BROKEN, RETIRED_COURSE, UNRESOLVED

EVERY_FRAME = {part.frame for part in TALLIED}
LABELLED = {
    RETIRED_COURSE: 2,
    UNRESOLVED: 3,
    BROKEN: 1,
    "ok": 40,  # a route no counter reads
    AGGREGATES: 30,
    COMPUTED: 50,
    COMPLETING: 4,
    UPDATES: 10,
    RECOMPUTED: 20,
    request_label("valid"): 25,
    request_label("skipped"): 5,
    request_label("failed"): 7,
    KEYS: 22,
}


def test_every_label_a_formula_reads_is_declared_by_one_frame():
    declared = [label for part in TALLIED for label in part.labels]
    assert len(declared) == len(set(declared))
    read = {label for f in FORMULAS.values() for label in (*f.plus, *f.minus)}
    assert read <= set(declared)
    assert {f.needs for f in FORMULAS.values()} - {None} <= EVERY_FRAME


def test_a_stream_batch_reports_every_counter():
    assert counters_from(LABELLED, EVERY_FRAME) == {
        Counter.RETIRED: 2,
        Counter.UNRESOLVED: 4,
        Counter.MISSING_STRUCTURE: 6,
        Counter.AGGREGATE_ROWS: 30,
        Counter.AGGREGATES_UNCHANGED: 20,
        Counter.ENROLMENT_UPDATES: 14,
        Counter.ENROLMENTS_UNCHANGED: 6,
        Counter.ENROLMENTS_COMPLETED: 4,
        Counter.CERT_EVENTS: 4,
        Counter.AUDIT_EVENTS: 4,
        Counter.FAILED_EVENTS: 11,
        Counter.TOTAL_EVENTS: 37,
        Counter.VALID_EVENTS: 25,
        Counter.SKIPPED_EVENTS: 5,
        Counter.FAILED_REQUESTS: 7,
        Counter.CONSUMPTION_READS: 22,
    }


def test_a_batch_without_requests_or_computed_aggregates_leaves_their_counters_out():
    counted = EVERY_FRAME - {"requests", "requested_keys", "all_aggregates"}
    labelled = {k: v for k, v in LABELLED.items() if not k.startswith("request:")}
    counts = counters_from(labelled | {COMPUTED: 0, KEYS: 0}, counted)
    assert set(FORMULAS) - set(counts) == {
        Counter.AGGREGATES_UNCHANGED,
        Counter.TOTAL_EVENTS,
        Counter.VALID_EVENTS,
        Counter.SKIPPED_EVENTS,
        Counter.FAILED_REQUESTS,
        Counter.CONSUMPTION_READS,
    }
    # a backfill's failed events are its enrolments without a usable structure
    assert counts[Counter.FAILED_EVENTS] == 4
    assert counts[Counter.ENROLMENTS_UNCHANGED] == 6
