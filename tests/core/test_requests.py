"""Parsing and classifying sync requests (docs/behaviour.md §1, docs/design.md §3.2)."""

from __future__ import annotations

import base64
import json

from chispa import assert_df_equality
from pyspark.sql.types import StringType, StructField, StructType

from enrolment_reconciliation.core.requests import (
    to_enrolment_keys,
    to_request_failures,
    to_sync_requests,
)
from enrolment_reconciliation.core.schemas import (
    ENROLMENT_KEY_SCHEMA,
    FAILED_PAYLOAD_MAX_CHARS,
    RAW_REQUEST_SCHEMA,
)
from tests.helpers import literal_frame, parsed_requests, raw_requests, sync_request
from tests.hostile_corpus import CORPUS, SKIPPED, VALID

CLASSIFIED = StructType(
    [
        StructField("userId", StringType(), True),
        StructField("requestStatus", StringType(), True),
        StructField("reason", StringType(), True),
    ]
)


def _edata(**edata) -> str:
    return json.dumps({"eid": "BE_JOB_REQUEST", "edata": edata})


def test_requests_are_classified_valid_skipped_or_failed_with_reasons(spark):
    payloads = [
        sync_request("u1", "c1", "b1"),
        sync_request("u2", "c1", "b1", action="USER-Enrolment-Sync"),
        sync_request("u3", "c1", "b1", action="batch-enrolment-update"),
        _edata(userId="u4", courseId="c1", batchId="b1"),  # no action: skipped like the original
        "not json at all",
        "[1, 2]",
        "",
        None,
        _edata(action="user-enrolment-sync", userId=5, courseId="c1", batchId="b1"),
        _edata(action="user-enrolment-sync", userId="u6", courseId="", batchId=None),
        _edata(action="user-enrolment-sync", userId="u7", courseId={"id": 1}, batchId=["b"]),
        _edata(action=True, userId="u8", courseId="c1", batchId="b1"),
        json.dumps({"edata": "user-enrolment-sync"}),
        json.dumps({"edata": []}),
        _edata(action="user-enrolment-sync", userId="x" * 200_000, courseId="c1", batchId="b1"),
        _edata(action="user-enrolment-sync", userId="a\x00b", courseId="c1", batchId="b1"),
        '{"edata": {"action": "user-enrolment-sync", "userId": "a", "userId": "b",'
        ' "courseId": "c1", "batchId": "b1"}}',
        '{"edata": {"action": "user-enrolment-sync", "userId": "u\\ud800",'
        ' "courseId": "c1", "batchId": "b1"}}',
        _edata(
            action="user-enrolment-sync", userId="u'; DROP TABLE x; --", courseId="c", batchId="b"
        ),
        '{"eid": "BE_JOB_REQUEST"} trailing text',
    ]
    actual = parsed_requests(spark, payloads).select("userId", "requestStatus", "reason")
    expected = literal_frame(
        spark,
        [
            ("u1", "valid", None),
            ("u2", "valid", None),
            ("u3", "skipped", None),
            ("u4", "skipped", None),
            (None, "failed", "malformed JSON"),
            (None, "failed", "the message is JSON but not an object"),
            (None, "failed", "empty message"),
            (None, "failed", "empty message: the Kafka record has no value (a tombstone)"),
            ("5", "failed", "edata.userId is not a string"),
            (
                "u6",
                "failed",
                "edata.courseId is missing or empty; edata.batchId is missing or empty",
            ),
            ("u7", "failed", "edata.courseId is not a string; edata.batchId is not a string"),
            ("u8", "failed", "edata.action is not a string"),
            (None, "failed", "edata is not a JSON object"),
            (None, "failed", "edata is not a JSON object"),
            (
                "x" * 200_000,
                "failed",
                "edata.userId is 200000 bytes long; ids are limited to 1024 bytes",
            ),
            ("a\x00b", "failed", "edata.userId contains control characters"),
            ("b", "failed", "edata.userId appears more than once"),
            (
                "u?",
                "failed",
                "the message holds an unpaired UTF-16 surrogate escape: not Unicode text",
            ),
            ("u'; DROP TABLE x; --", "valid", None),  # only ever a bound value, never CQL text
            (None, "failed", "malformed JSON"),
        ],
        CLASSIFIED,
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_duplicate_requests_for_one_enrolment_are_reconciled_once(spark):
    payloads = [
        sync_request("u1", "c1", "b1"),
        sync_request("u1", "c1", "b1"),
        sync_request("u1", "c1", "b2"),
        sync_request("u1", "c1", "b1", action="User-Enrolment-Sync"),
        sync_request("u2", "c1", "b1", action="other"),
    ]
    actual = to_enrolment_keys(parsed_requests(spark, payloads))
    expected = literal_frame(spark, [("u1", "c1", "b1"), ("u1", "c1", "b2")], ENROLMENT_KEY_SCHEMA)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_failed_requests_carry_the_raw_payload_reason_and_source(spark):
    actual = to_request_failures(parsed_requests(spark, ["{broken", sync_request("u", "c", "b")]))
    rows = [(r.reason, json.loads(r.value)) for r in actual.collect()]
    assert rows == [
        (
            "malformed JSON",
            {
                "reason": "malformed JSON",
                "payload": "{broken",
                "source": {"topic": "sync", "partition": 0, "offset": 0},
            },
        )
    ]


def test_a_failed_event_never_outgrows_a_kafka_message(spark):
    huge = "x" * 2_000_000
    binary = b'{"edata": {"userId": "\xff\xfe"}}'
    raw = raw_requests(spark, [huge]).unionByName(
        literal_frame(spark, [(binary, "sync", 0, 1)], RAW_REQUEST_SCHEMA)
    )
    rows = [json.loads(r.value) for r in to_request_failures(to_sync_requests(raw)).collect()]
    assert rows == [
        {
            "reason": "malformed JSON",
            "payload": "x" * FAILED_PAYLOAD_MAX_CHARS,
            "payloadTruncated": True,
            "payloadBytes": 2_000_000,
            "source": {"topic": "sync", "partition": 0, "offset": 0},
        },
        {
            "reason": "not UTF-8 text",
            "payloadBase64": base64.b64encode(binary).decode(),
            "payloadBytes": len(binary),
            "source": {"topic": "sync", "partition": 0, "offset": 1},
        },
    ]


def test_every_kind_in_the_hostile_corpus_is_classified_with_its_exact_reason(spark):
    payloads = [None if h.payload is None else h.payload for h in CORPUS]
    rows = [(p, "sync", 0, offset) for offset, p in enumerate(payloads)]
    classified = to_sync_requests(spark.createDataFrame(rows, RAW_REQUEST_SCHEMA))
    actual = {
        r.offset: (r.requestStatus, r.reason)
        for r in classified.select("offset", "requestStatus", "reason").collect()
    }
    expected = {
        offset: (h.expected, None) if h.expected in (VALID, SKIPPED) else ("failed", h.expected)
        for offset, h in enumerate(CORPUS)
    }
    mismatches = {
        CORPUS[o].name: (actual.get(o), want)
        for o, want in expected.items()
        if actual.get(o) != want
    }
    assert len(CORPUS) >= 50
    assert mismatches == {}, "\n".join(
        f"{k}: got {v[0]}, want {v[1]}" for k, v in mismatches.items()
    )
