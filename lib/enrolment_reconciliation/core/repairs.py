"""Certificate repair: completed enrolments whose certificate request was lost get it again.

An enrolment gets a certificate request when it *becomes* complete. When that request was lost
(the original job's crash window, a certificate pre-processor outage, a template added to the
batch later) the learner stays complete without a certificate, and nothing asks again. A repair
run (``backfill --repair-certificates``) sends one request per such enrolment, as Sunbird's
CollectionReconciliationJob does: status 2, no issued certificate, in a batch with a
certificate template. No AUDIT event: the completion was audited when it happened.

Example (notebook)::

    templated = templated_batches(course_batches)
    eligible = needs_certificate(enrolments, templated, completed_before=run_started)
    repairs = to_certificate_repairs(to_event_key_names(eligible), now, run_id="r1")
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from enrolment_reconciliation.core.schemas import COMPLETED, ENROLMENT_TABLE_KEY


def _empty(column: str) -> Column:
    # size(null) is -1 under Spark's default sizeOfNull; coalesce makes it plain either way
    return F.coalesce(F.size(column), F.lit(0)) <= 0


def templated_batches(course_batches: DataFrame) -> DataFrame:
    """The ``(courseid, batchid)`` of batches with at least one certificate template."""
    return course_batches.where(~_empty("cert_templates")).select("courseid", "batchid")


def needs_certificate(
    enrolments: DataFrame, templated: DataFrame, *, completed_before: datetime
) -> DataFrame:
    """Enrolments (table key names) that are complete, hold no certificate, and are in a batch
    with a template; one row per enrolment key.

    Only those completed before ``completed_before`` (the repair run's start): an enrolment
    the run itself completes gets its request from the completion (also when a resumed run
    reads the status an interrupted attempt wrote).
    """
    completed_earlier = F.col("completedon").isNull() | (
        F.col("completedon") < F.lit(completed_before)
    )
    complete_uncertified = enrolments.where(
        (F.col("status") == COMPLETED)
        & completed_earlier
        & _empty("issued_certificates")
        & _empty("certificates")
    )
    # a batch catalogue is small: broadcast, so the enrolments are never shuffled
    return complete_uncertified.join(
        F.broadcast(templated), ["courseid", "batchid"], "left_semi"
    ).select(*ENROLMENT_TABLE_KEY)
