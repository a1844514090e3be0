"""Sync requests: parse raw Kafka values, classify them, and reduce them to enrolment keys.

Classification of every raw message (docs/behaviour.md §1, docs/design.md §3.2 and §4):

* ``valid``   — ``edata.action`` is ``user-enrolment-sync`` (any case) with ids the stores can
  take as keys;
* ``skipped`` — parsed, but another action (or none): counted, no output, like the original;
* ``failed``  — anything else: sent to the failed topic with a reason that names exactly what is
  wrong, and the raw payload (truncated, so the failed event itself always fits in a Kafka
  message).

Every check here runs before any read: a request that Cassandra, Redis or Kafka could not take
never reaches them, so one bad request can never fail a batch (a poison pill).
"""

from __future__ import annotations

import time
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from enrolment_reconciliation.core.counters import Counter
from enrolment_reconciliation.core.expressions import built_once, empty_ids
from enrolment_reconciliation.core.schemas import (
    ENROLMENT_KEY,
    FAILED_PAYLOAD_MAX_CHARS,
    MAX_ID_BYTES,
    SYNC_ACTION,
    SYNC_REQUEST_JSON_SCHEMA,
)

VALID, SKIPPED, FAILED = "valid", "skipped", "failed"
_JSON_OPTIONS = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt_record"}
_AS_TEXT = "struct<edata:string,_corrupt_record:string>"
_FIELDS = ("action", "userId", "courseId", "batchId")
# A \uXXXX escape of a UTF-16 surrogate without its partner (an odd number of backslashes before
# the u, so it is an escape): not a Unicode character, and Spark would silently turn it into '?',
# i.e. into another id.
_ESCAPE = r"(?<!\\)(?:\\\\)*"
_UNPAIRED_SURROGATE = (
    rf"(?i){_ESCAPE}\\ud[89ab][0-9a-f]{{2}}(?!\\ud[c-f][0-9a-f]{{2}})"
    rf"|(?i){_ESCAPE}(?<!\\ud[89ab][0-9a-f]{{2}})\\ud[c-f][0-9a-f]{{2}}"
)


def _is_non_string(edata_json: Column, field: str) -> Column:
    """True when ``edata.<field>`` holds a number, boolean, object or array.

    Spark renders a non-string JSON value as its JSON text under a string schema, so the type is
    read from the compact edata text: a key follows ``{`` or ``,`` directly only outside strings.
    """
    return F.coalesce(edata_json.rlike(f'[{{,]"{field}":(?!"|null[,}}])'), F.lit(False))


def _is_overflowed_number(value: Column) -> Column:
    """A number past a double (``1e400``) reaches Spark's JSON functions as the JSON text
    ``"Infinity"`` under a string schema; a string holding those quotes would be escaped."""
    escaped = F.col("payload").contains('\\"Infinity\\"')
    return F.coalesce(value.isin('"Infinity"', '"-Infinity"') & ~escaped, F.lit(False))


def _blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


def _raw_reason(raw: Column, payload: Column, edata_text: Column) -> Column:
    """What is wrong with the message as a whole (null when it is a JSON object)."""
    single_value = F.json_array_length(F.concat(F.lit("["), payload, F.lit("]"))) == 1
    valid_utf8 = F.encode(F.decode(raw, "UTF-8"), "UTF-8") == raw
    return (
        F.when(raw.isNull(), "empty message: the Kafka record has no value (a tombstone)")
        .when(payload.rlike(r"^\s*$"), "empty message")
        .when(~valid_utf8, "not UTF-8 text")
        .when(~F.coalesce(single_value, F.lit(False)), "malformed JSON")
        .when(~F.ltrim(payload).startswith("{"), "the message is JSON but not an object")
        .when(
            payload.rlike(_UNPAIRED_SURROGATE),
            "the message holds an unpaired UTF-16 surrogate escape: not Unicode text",
        )
        .when(
            edata_text.isNotNull() & ~F.ltrim(edata_text).startswith("{"),
            "edata is not a JSON object",
        )
    )


def _field_reason(name: str, value: Column, edata_text: Column, keys: Column) -> Column:
    """What is wrong with one edata field, or null."""
    field = f"edata.{name}"
    is_id = name != "action"
    reason = F.when(
        F.size(F.filter(keys, lambda k: k == name)) > 1, F.lit(f"{field} appears more than once")
    ).when(
        _is_non_string(edata_text, name) | _is_overflowed_number(value),
        F.lit(f"{field} is not a string"),
    )
    if is_id:
        reason = (
            reason.when(_blank(value), F.lit(f"{field} is missing or empty"))
            .when(
                F.octet_length(value) > MAX_ID_BYTES,
                F.concat(
                    F.lit(f"{field} is "),
                    F.octet_length(value).cast("string"),
                    F.lit(f" bytes long; ids are limited to {MAX_ID_BYTES} bytes"),
                ),
            )
            .when(value.rlike(r"[\x00-\x1f\x7f]"), F.lit(f"{field} contains control characters"))
        )
    return reason


@built_once
def _classification() -> tuple[dict[str, Column], Column, Column]:
    """The edata fields, the reason a request fails (or null) and whether it is a sync."""
    edata_text = F.col("_edata_text")
    keys = F.coalesce(F.json_object_keys(edata_text), empty_ids())
    fields = {name: F.col("_parsed.edata")[name] for name in _FIELDS}
    is_sync = F.lower(F.trim(F.coalesce(fields["action"], F.lit("")))) == SYNC_ACTION
    problems = [_field_reason(n, fields[n], edata_text, keys) for n in _FIELDS]
    # The message itself, then the action; the ids matter only for a sync request.
    reason = F.coalesce(_raw_reason(F.col("_raw"), F.col("payload"), edata_text), problems[0])
    id_reason = F.concat_ws("; ", *problems[1:])
    reason = F.when(reason.isNotNull(), reason).when(is_sync & (id_reason != ""), id_reason)
    return fields, reason, is_sync


def to_sync_requests(raw: DataFrame) -> DataFrame:
    """Parse raw messages into one row each with the request fields and a classification.

    Input: Spark's Kafka columns (``value`` binary or string, ``topic``, ``partition``,
    ``offset``). Output adds ``payload`` (the raw text), ``action``, ``userId``, ``courseId``,
    ``batchId``, ``requestStatus`` (valid | skipped | failed) and ``reason`` (failed only).
    """
    source = tuple(c for c in ("topic", "partition", "offset") if c in raw.columns)
    parsing, classifying, status = _request_columns(source)
    classified = raw.select(*parsing).select(*classifying)
    return classified.withColumn("requestStatus", status).drop("_sync")


@built_once
def _request_columns(source: tuple[str, ...]) -> tuple[list[Column], list[Column], Column]:
    """The parse step's columns, the classification's, and the status over its result."""
    payload = F.col("value").cast("string")
    parsing = [
        F.col("value").cast("binary").alias("_raw"),
        payload.alias("payload"),
        *[F.col(c) for c in source],
        F.from_json(payload, SYNC_REQUEST_JSON_SCHEMA, _JSON_OPTIONS).alias("_parsed"),
        F.from_json(payload, _AS_TEXT, _JSON_OPTIONS)["edata"].alias("_edata_text"),
    ]
    fields, reason, is_sync = _classification()
    classifying = [
        F.col("payload"),
        *[F.col(c) for c in source],
        *[column.alias(name) for name, column in fields.items()],
        reason.alias("reason"),
        is_sync.alias("_sync"),
    ]
    status = (
        F.when(F.col("reason").isNotNull(), FAILED).when(~F.col("_sync"), SKIPPED).otherwise(VALID)
    )
    return parsing, classifying, status


def request_counts() -> list[tuple[Counter, Column]]:
    """Aggregate columns counting requests by classification (total, skipped, failed, valid)."""
    status = F.col("requestStatus")
    return [
        (Counter.TOTAL_EVENTS, F.count(F.lit(1))),
        (Counter.SKIPPED_EVENTS, F.sum(F.when(status == SKIPPED, 1).otherwise(0))),
        (Counter.FAILED_REQUESTS, F.sum(F.when(status == FAILED, 1).otherwise(0))),
        (Counter.VALID_EVENTS, F.sum(F.when(status == VALID, 1).otherwise(0))),
    ]


def request_counter_columns() -> list[Column]:
    """The request counters as named aggregate columns (the stream's observed metrics)."""
    return [column.alias(name) for name, column in request_counts()]


def filter_valid_requests(requests: DataFrame) -> DataFrame:
    """Keep the requests to reconcile."""
    return requests.where(F.col("requestStatus") == VALID)


def to_enrolment_keys(requests: DataFrame) -> DataFrame:
    """Distinct (userId, courseId, batchId) of the valid requests: each enrolment once a batch."""
    return filter_valid_requests(requests).select(*ENROLMENT_KEY).distinct()


def _base64(binary: Column) -> Column:
    """Plain base64 (Spark's is MIME: line breaks every 76 characters)."""
    return F.regexp_replace(F.base64(binary), r"\s", "")


def to_request_failures(requests: DataFrame) -> DataFrame:
    """Failed-topic rows for rejected requests: clean JSON with the reason and the raw payload.

    The payload is cut to ``FAILED_PAYLOAD_MAX_CHARS`` characters (``payloadTruncated`` and
    ``payloadBytes`` say so), so a 1 MB message cannot make its failed event too large for
    Kafka; a payload that is not UTF-8 text travels as ``payloadBase64`` instead.
    """
    source = tuple(c for c in ("topic", "partition", "offset") if c in requests.columns)
    return requests.where(F.col("requestStatus") == FAILED).select(
        *_request_failure_columns(source)
    )


@built_once
def _request_failure_columns(source: tuple[str, ...]) -> list[Column]:
    raw_bytes = F.octet_length(F.col("payload"))
    text = F.encode(F.decode(F.col("payload").cast("binary"), "UTF-8"), "UTF-8") == F.col(
        "payload"
    ).cast("binary")
    truncated = F.char_length(F.col("payload")) > FAILED_PAYLOAD_MAX_CHARS
    fields = [
        F.col("reason"),
        F.when(text, F.substring("payload", 1, FAILED_PAYLOAD_MAX_CHARS)).alias("payload"),
        F.when(~text, _base64(F.substring(F.col("payload").cast("binary"), 1, 65536))).alias(
            "payloadBase64"
        ),
        F.when(truncated, F.lit(True)).alias("payloadTruncated"),
        F.when(truncated | ~text, raw_bytes).alias("payloadBytes"),
    ]
    if source:
        fields.append(F.struct(*[F.col(c) for c in source]).alias("source"))
    return [F.col("reason"), F.to_json(F.struct(*fields)).alias("value")]


def sync_request_event(
    user: Any,
    course: Any,
    batch: Any,
    *,
    action: str = SYNC_ACTION,
    ets: int | None = None,
) -> dict[str, Any]:
    """A sync request as lms-service publishes it (docs/behaviour.md §1.2), as plain data.

    Example::

        json.dumps(sync_request_event("u1", "do_1", "b1"))  # a Kafka value the stream reads
    """
    ets = int(time.time() * 1000) if ets is None else ets
    return {
        "eid": "BE_JOB_REQUEST",
        "ets": ets,
        "mid": f"LP.{ets}.{user}",
        "actor": {"type": "System", "id": "Course Batch Updater"},
        "context": {"pdata": {"ver": "1.0", "id": "org.sunbird.platform"}},
        "object": {"type": "CourseBatchEnrolment", "id": f"{batch}_{user}"},
        "edata": {
            "action": action,
            "iteration": 1,
            "batchId": batch,
            "userId": user,
            "courseId": course,
        },
    }
