"""Every counter the job reports, defined once: its name, its meaning, the original's metric.

The stream, ``sync``, the backfill, the JSON log line, Spark's observed metrics and the
Prometheus endpoint all use these names. Names follow the original job's metrics (docs/behaviour.md
§8.1), namespaced by the stage that counts them, because the original's names collide across stages.

Example::

    counts = new_counts()
    counts[Counter.TOTAL_EVENTS] += 1
    json.dumps(counts)  # {"requests.total-events-count": 1, ...}
"""

from __future__ import annotations

from enum import StrEnum


class Counter(StrEnum):
    """A counter's name (a ``str``, so a counts dict serialises as it is)."""

    TOTAL_EVENTS = "requests.total-events-count"
    SKIPPED_EVENTS = "requests.skipped-events-count"
    FAILED_REQUESTS = "requests.failed-events-count"
    VALID_EVENTS = "requests.valid-events-count"
    ENROLMENTS_SCANNED = "backfill.enrolments-scanned-count"
    CONSUMPTION_ROWS_SCANNED = "backfill.consumption-rows-scanned-count"
    CONSUMPTION_READS = "consumption.db-read-count"
    ENROLMENTS_WITH_CONSUMPTION = "consumption.enrolments-with-consumption-count"
    CACHE_HITS = "relation-cache.cache-hit-count"
    CACHE_MISSES = "relation-cache.cache-miss-count"
    REDIS_READS = "relation-cache.redis-read-count"
    BROKEN_COURSES = "relation-cache.broken-course-count"
    SEARCH_CALLS = "search.search-call-count"
    MISSING_STRUCTURE = "progress.missing-structure-count"
    RETIRED = "progress.retired-consumption-events-count"
    UNRESOLVED = "progress.failed-events-count"
    AGGREGATE_ROWS = "aggregates.activity-agg-rows-count"
    AGGREGATES_UNCHANGED = "aggregates.unchanged-count"
    ENROLMENT_READS = "enrolment.db-read-count"
    ENROLMENT_UPDATES = "enrolment.enrolment-update-count"
    ENROLMENTS_UNCHANGED = "enrolment.unchanged-count"
    ENROLMENTS_COMPLETED = "enrolment.enrolment-complete-count"
    CERT_EVENTS = "enrolment.cert-issue-events-count"
    AUDIT_EVENTS = "enrolment.audit-events-count"
    FAILED_EVENTS = "failed.failed-events-count"
    AGGREGATE_WRITES = "write.db-update-count"
    CERT_REPAIRS = "backfill.certificate-repair-count"


MEANING: dict[Counter, str] = {
    Counter.TOTAL_EVENTS: "sync requests read (original: total-events-count)",
    Counter.SKIPPED_EVENTS: "requests with another action (original: skipped-events-count)",
    Counter.FAILED_REQUESTS: "requests refused before any read: malformed, bad ids",
    Counter.VALID_EVENTS: "requests to reconcile",
    Counter.ENROLMENTS_SCANNED: "enrolment rows the backfill read",
    Counter.CONSUMPTION_ROWS_SCANNED: "consumption rows the backfill read (of enrolments in scope)",
    Counter.CONSUMPTION_READS: "keyed consumption reads: one per distinct requested enrolment "
    "(original: db-read-count of the main function, one per request)",
    Counter.ENROLMENTS_WITH_CONSUMPTION: "enrolments that have consumption rows",
    Counter.CACHE_HITS: "relation-cache keys resolved (original: cache-hit-count, which counts "
    "reads, not hits)",
    Counter.CACHE_MISSES: "relation-cache keys that were absent (original: cache-miss-count)",
    Counter.REDIS_READS: "relation-cache keys fetched from Redis (not from the driver's TTL cache)",
    Counter.BROKEN_COURSES: "courses with a relation-cache key that is not a set",
    Counter.SEARCH_CALLS: "HTTP calls to the search service",
    Counter.MISSING_STRUCTURE: "enrolments whose course has no leafnodes or a broken structure",
    Counter.RETIRED: "enrolments of Retired courses without leafnodes "
    "(original: retired-consumption-events-count)",
    Counter.UNRESOLVED: "enrolments of published or unknown courses without leafnodes, or with "
    "a broken structure (original: failed-events-count)",
    Counter.AGGREGATE_ROWS: "user_activity_agg rows to write (course and unit)",
    Counter.AGGREGATES_UNCHANGED: "aggregate rows not written because the table holds the value",
    Counter.ENROLMENT_READS: "user_enrolments rows looked up (original: db-read-count of the "
    "progress functions)",
    Counter.ENROLMENT_UPDATES: "user_enrolments rows to write",
    Counter.ENROLMENTS_UNCHANGED: "enrolments recomputed but not written: the table holds their "
    "values, or they are completed and left alone",
    Counter.ENROLMENTS_COMPLETED: "enrolments completed now (original: enrolment-complete-count, "
    "which counts batches)",
    Counter.CERT_EVENTS: "certificate-issue requests (original: cert-issue-events-count)",
    Counter.AUDIT_EVENTS: "AUDIT enrol-complete events",
    Counter.FAILED_EVENTS: "events sent to the failed topic",
    Counter.AGGREGATE_WRITES: "aggregate map-append UPDATEs written (original: db-update-count, "
    "which counted batches of threshold.batch.write.size)",
    Counter.CERT_REPAIRS: "certificate requests sent again by a repair run: completed "
    "enrolments without a certificate in a batch with a template",
}

# The original job's metric (docs/behaviour.md §8.1) each counter stands for, if any: exported under
# the original's Prometheus name so existing dashboards carry over (io/prometheus.py).
ORIGINAL: dict[Counter, str] = {
    Counter.TOTAL_EVENTS: "total-events-count",
    Counter.SKIPPED_EVENTS: "skipped-events-count",
    Counter.CONSUMPTION_READS: "db-read-count",
    Counter.CACHE_HITS: "cache-hit-count",
    Counter.CACHE_MISSES: "cache-miss-count",
    Counter.RETIRED: "retired-consumption-events-count",
    Counter.UNRESOLVED: "failed-events-count",
    Counter.ENROLMENT_READS: "db-read-count",
    Counter.ENROLMENTS_COMPLETED: "enrolment-complete-count",
    Counter.CERT_EVENTS: "cert-issue-events-count",
    Counter.AGGREGATE_WRITES: "db-update-count",
}

Counts = dict[str, int]


def new_counts(*only: Counter) -> Counts:
    """A counts record with every counter (or the given ones) at zero."""
    return {str(c): 0 for c in (only or tuple(Counter))}
