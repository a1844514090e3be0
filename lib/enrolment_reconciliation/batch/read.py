"""The two readers of a batch's inputs: keyed (stream, sync) and scan (backfill).

Both produce the same frames for the same core: one row per enrolment with its consumption and
current enrolment row (``core.progress.with_enrolment_state``). The keyed reader reads exactly
the requested enrolments by connector direct joins; the scan reader reads every enrolment in
scope by token-range scans with the filters pushed down.

Example (notebook)::

    frames = read_requested(spark, raw_requests, cfg)        # the stream's reader
    frames = read_in_scope(spark, cfg, ScanFilters(courses=("do_1",)))  # the backfill's
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession

from enrolment_reconciliation.batch.materialise import materialise_lazily
from enrolment_reconciliation.core.progress import (
    to_user_consumption,
    with_consumption_defaults,
    with_enrolment_state,
)
from enrolment_reconciliation.core.requests import to_enrolment_keys, to_sync_requests
from enrolment_reconciliation.io.cassandra import (
    ScanFilters,
    current_aggregates,
    enrolment_table,
    read_consumption_for,
    scan_consumption,
    scan_enrolments,
)

if TYPE_CHECKING:
    from enrolment_reconciliation.runtime.config import JobConfig


@dataclass(frozen=True)
class SourceFrames:
    """A batch's inputs as read (lazy frames).

    ``progress`` has one row per enrolment; rows with null ``contents`` (enrolments without
    consumption, scan only) are counted, not reconciled. ``requests`` are the parsed sync
    requests (keyed reader). ``current_aggregates`` is the table to compare with when only
    changes are written (scan reader); ``current_aggregates_by_key`` whether it is read by key
    (direct join). ``scanned`` says whether the rows come from a scan. ``materialised`` are the
    frames the reader materialised (``materialise``), for the batch to release.
    """

    progress: DataFrame
    requests: DataFrame | None = None
    current_aggregates: DataFrame | None = None
    current_aggregates_by_key: bool = False
    scanned: bool = False
    materialised: tuple[DataFrame, ...] = ()


def read_requested(spark: SparkSession, raw: DataFrame, cfg: JobConfig) -> SourceFrames:
    """The keyed reader: the enrolments named by sync requests, by connector direct joins.

    ``raw`` holds Kafka values (``value``, ``topic``, ``partition``, ``offset``) or requests the
    stream already parsed. Duplicate requests are read once; invalid ones are never read. The
    requests are materialised: the direct joins, the counters and the failed events all read
    them, and the source (a Kafka micro-batch) is read once.
    """
    parsed = raw if "requestStatus" in raw.columns else to_sync_requests(raw)
    requests = materialise_lazily(parsed)
    keys = to_enrolment_keys(requests)
    consumption = with_consumption_defaults(read_consumption_for(spark, keys, cfg.cassandra))
    progress = with_enrolment_state(
        to_user_consumption(consumption), enrolment_table(spark, cfg.cassandra)
    )
    return SourceFrames(progress=progress, requests=requests, materialised=(requests,))


def read_in_scope(
    spark: SparkSession,
    cfg: JobConfig,
    filters: ScanFilters,
    *,
    staged_aggregates: DataFrame | None = None,
) -> SourceFrames:
    """The scan reader: every enrolment in scope, with its consumption and aggregates.

    Token-range scans of ``user_enrolments`` and ``user_content_consumption`` (filters pushed
    down where the key layout allows), one shuffle join, and the aggregates table to write only
    what changes: ``staged_aggregates`` (a sliced backfill's copy of the table's rows of the
    scope, ``io.staging``) when given, else the table itself.
    """
    consumption = with_consumption_defaults(scan_consumption(spark, cfg.cassandra, filters))
    progress = with_enrolment_state(
        to_user_consumption(consumption),
        scan_enrolments(spark, cfg.cassandra, filters),
        every_enrolment=True,
    )
    return SourceFrames(
        progress=progress,
        current_aggregates=(
            current_aggregates(spark, cfg.cassandra, filters)
            if staged_aggregates is None
            else staged_aggregates
        ),
        current_aggregates_by_key=filters.narrowed and staged_aggregates is None,
        scanned=True,
    )
