"""Which completed enrolments a certificate repair serves, and the request it sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from chispa import assert_df_equality

from enrolment_reconciliation.core.events import to_certificate_events, to_certificate_repairs
from enrolment_reconciliation.core.repairs import needs_certificate, templated_batches
from tests.helpers import literal_frame

STARTED = datetime(2026, 6, 1, tzinfo=UTC)
BEFORE, AFTER = datetime(2026, 5, 1), datetime(2026, 6, 2)
CERT = [{"identifier": "c1", "name": "Completion"}]
ENROLMENTS = (
    "userid string, courseid string, batchid string, status int, completedon timestamp,"
    " issued_certificates array<map<string,string>>, certificates array<map<string,string>>"
)
BATCHES = "courseid string, batchid string, cert_templates map<string, map<string,string>>"
KEYS = "userid string, courseid string, batchid string"


def test_complete_uncertified_enrolments_of_templated_batches_earlier_than_the_run(spark):
    batches = literal_frame(
        spark,
        [
            ("c1", "b1", {"t1": {"name": "Completion"}}),
            ("c1", "b2", {}),  # templates removed
            ("c1", "b3", None),  # never had one
        ],
        BATCHES,
    )
    enrolments = literal_frame(
        spark,
        [
            ("u1", "c1", "b1", 2, BEFORE, None, None),  # repaired
            ("u2", "c1", "b1", 2, BEFORE, [], []),  # repaired: empty lists hold nothing
            ("u3", "c1", "b1", 2, None, None, None),  # repaired: an old row without completedon
            ("u4", "c1", "b1", 2, BEFORE, CERT, None),  # holds a certificate
            ("u5", "c1", "b1", 2, BEFORE, None, CERT),  # holds one under the old column
            ("u6", "c1", "b1", 1, None, None, None),  # not complete
            ("u7", "c1", "b1", 2, AFTER, None, None),  # completed by this run: its own request
            ("u8", "c1", "b2", 2, BEFORE, None, None),  # no template
            ("u9", "c1", "b3", 2, BEFORE, None, None),  # no template
            ("u1", "c2", "b1", 2, BEFORE, None, None),  # another course's batch of that id
        ],
        ENROLMENTS,
    )
    actual = needs_certificate(enrolments, templated_batches(batches), completed_before=STARTED)
    expected = literal_frame(
        spark, [("u1", "c1", "b1"), ("u2", "c1", "b1"), ("u3", "c1", "b1")], KEYS
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_repair_sends_the_completion_request_with_a_mid_of_its_run(spark):
    keys = literal_frame(
        spark, [("u1", "c1", "b1")], "userId string, courseId string, batchId string"
    )
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    completion = json.loads(to_certificate_events(keys, now).first().value)
    first, again = (
        json.loads(to_certificate_repairs(keys, now, run).first().value) for run in ("r1", "r2")
    )
    repeated = json.loads(to_certificate_repairs(keys, now, "r1").first().value)
    assert {k: v for k, v in first.items() if k != "mid"} == {
        k: v for k, v in completion.items() if k != "mid"
    }
    assert first["edata"]["reIssue"] is False
    assert len({completion["mid"], first["mid"], again["mid"]}) == 3
    assert repeated["mid"] == first["mid"] and first["mid"].startswith("LP.")
