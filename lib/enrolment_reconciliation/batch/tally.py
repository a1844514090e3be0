"""What a batch counts, declared as data: which rows of which frame, under which label, and
which counter each label feeds. ``tally`` builds one Spark job from the declaration.

Events and failures are counted from what they are made of (one AUDIT and one certificate event
per newly completed update; a failed event per rejected request and per enrolment of a course
without a usable structure), so their JSON need not be planned for the count.

Adding a counter: declare its frame in ``TALLIED`` if no label counts its rows yet, then its
formula in ``FORMULAS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from enrolment_reconciliation.core.counters import Counter, Counts
from enrolment_reconciliation.core.progress import BROKEN, RETIRED_COURSE, ROUTE, UNRESOLVED
from enrolment_reconciliation.core.reconcile import ReconcileSettings, Reconciliation
from enrolment_reconciliation.core.requests import FAILED, SKIPPED, VALID, to_enrolment_keys

AGGREGATES, COMPUTED, COMPLETING, UPDATES, RECOMPUTED, KEYS = (
    "aggregates",
    "computed",
    "completing",
    "updates",
    "recomputed",
    "keys",
)


def request_label(status: str) -> str:
    return f"request:{status}"


REQUEST_LABELS = tuple(request_label(s) for s in (VALID, SKIPPED, FAILED))


@dataclass(frozen=True)
class Tallied:
    """The rows of one frame of a batch, each counted under the label ``label()`` gives it."""

    frame: str  # a key of ``counted_frames``
    labels: tuple[str, ...]  # every label it can give (the ones the formulas read)
    label: Callable[[], Column]


TALLIED: tuple[Tallied, ...] = (
    Tallied("reconciled", (RETIRED_COURSE, UNRESOLVED, BROKEN), lambda: F.col(ROUTE)),
    Tallied("activity_aggregates", (AGGREGATES,), lambda: F.lit(AGGREGATES)),
    Tallied(
        "enrolment_updates",
        (COMPLETING, UPDATES),
        lambda: F.when(F.col("newlyCompleted"), F.lit(COMPLETING)).otherwise(F.lit(UPDATES)),
    ),
    Tallied("enrolled", (RECOMPUTED,), lambda: F.lit(RECOMPUTED)),
    Tallied("all_aggregates", (COMPUTED,), lambda: F.lit(COMPUTED)),
    Tallied(
        "requests",
        REQUEST_LABELS,
        lambda: F.concat(F.lit(request_label("")), "requestStatus"),
    ),
    Tallied("requested_keys", (KEYS,), lambda: F.lit(KEYS)),
)


@dataclass(frozen=True)
class Formula:
    """A counter as labels added and subtracted; with ``needs``, reported only by a batch that
    counted that frame (a backfill has no requests; a difference needs its minuend)."""

    plus: tuple[str, ...]
    minus: tuple[str, ...] = ()
    needs: str | None = None


FORMULAS: dict[Counter, Formula] = {
    Counter.RETIRED: Formula((RETIRED_COURSE,)),
    Counter.UNRESOLVED: Formula((UNRESOLVED, BROKEN)),
    Counter.MISSING_STRUCTURE: Formula((RETIRED_COURSE, UNRESOLVED, BROKEN)),
    Counter.AGGREGATE_ROWS: Formula((AGGREGATES,)),
    Counter.AGGREGATES_UNCHANGED: Formula((COMPUTED,), (AGGREGATES,), needs="all_aggregates"),
    Counter.ENROLMENT_UPDATES: Formula((COMPLETING, UPDATES)),
    Counter.ENROLMENTS_UNCHANGED: Formula((RECOMPUTED,), (COMPLETING, UPDATES)),
    Counter.ENROLMENTS_COMPLETED: Formula((COMPLETING,)),
    Counter.CERT_EVENTS: Formula((COMPLETING,)),
    Counter.AUDIT_EVENTS: Formula((COMPLETING,)),
    Counter.FAILED_EVENTS: Formula((request_label(FAILED), UNRESOLVED, BROKEN)),
    Counter.TOTAL_EVENTS: Formula(REQUEST_LABELS, needs="requests"),
    Counter.VALID_EVENTS: Formula((request_label(VALID),), needs="requests"),
    Counter.SKIPPED_EVENTS: Formula((request_label(SKIPPED),), needs="requests"),
    Counter.FAILED_REQUESTS: Formula((request_label(FAILED),), needs="requests"),
    # one keyed read per distinct requested enrolment
    Counter.CONSUMPTION_READS: Formula((KEYS,), needs="requested_keys"),
}


def counted_frames(
    result: Reconciliation, settings: ReconcileSettings, requests: DataFrame | None
) -> dict[str, DataFrame]:
    """The frames of ``TALLIED`` this batch has."""
    frames = {
        "reconciled": result.reconciled,
        "activity_aggregates": result.activity_aggregates,
        "enrolment_updates": result.enrolment_updates,
        "enrolled": result.course_progress.where(F.col("enrolled")),
    }
    if settings.write_only_changes:
        frames["all_aggregates"] = result.all_aggregates
    if requests is not None:
        frames |= {"requests": requests, "requested_keys": to_enrolment_keys(requests)}
    return frames


def counters_from(labelled: Mapping[str, int], counted: set[str]) -> Counts:
    """Every counter ``FORMULAS`` can give from the rows per label and the frames counted."""
    counts: Counts = {}
    for counter, formula in FORMULAS.items():
        if formula.needs is not None and formula.needs not in counted:
            continue
        plus = sum(labelled.get(label, 0) for label in formula.plus)
        counts[counter] = plus - sum(labelled.get(label, 0) for label in formula.minus)
    return counts


def tally(
    result: Reconciliation, settings: ReconcileSettings, requests: DataFrame | None
) -> Counts:
    """One Spark job: every count of the batch (it also materialises the reconciled rows).

    The requests are counted here, not in a job of their own: the read job has already
    materialised them once, so the stream's source, and its observed metrics, are read once.
    """
    frames = counted_frames(result, settings, requests)
    parts = [
        frames[part.frame].select(part.label().alias("k"))
        for part in TALLIED
        if part.frame in frames
    ]
    # few tasks: every branch reads small materialised frames, and each task costs more than
    # its rows
    union = reduce(DataFrame.unionByName, parts).coalesce(
        result.reconciled.sparkSession.sparkContext.defaultParallelism
    )
    labelled = {
        r.k: int(r.n) for r in union.groupBy("k").agg(F.count(F.lit(1)).alias("n")).collect()
    }
    return counters_from(labelled, set(frames))
