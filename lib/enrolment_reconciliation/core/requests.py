"""Sync requests: parse raw Kafka values, classify them, and reduce them to enrolment keys.

Classification of every raw message (spec.md §1, design.md §3.2):

* ``valid``   — ``edata.action`` is ``user-enrolment-sync`` (any case) with non-empty string ids;
* ``skipped`` — parsed, but another action (or none): counted, no output, like the original;
* ``failed``  — unparseable JSON, a non-object, a non-string action or id, missing or empty ids:
  sent to the failed topic with the raw payload and a reason.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from enrolment_reconciliation.schemas import ENROLMENT_KEY, SYNC_ACTION, SYNC_REQUEST_JSON_SCHEMA

VALID, SKIPPED, FAILED = "valid", "skipped", "failed"
_JSON_OPTIONS = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt_record"}
_EDATA_AS_TEXT = "struct<edata:string,_corrupt_record:string>"


def _is_non_string(edata_json: Column, field: str) -> Column:
    """True when ``edata.<field>`` holds a number, boolean, object or array.

    Spark renders a non-string JSON value as its JSON text under a string schema, so the type is
    read from the compact edata text: a key follows ``{`` or ``,`` directly only outside strings.
    """
    return F.coalesce(edata_json.rlike(f'[{{,]"{field}":(?!"|null[,}}])'), F.lit(False))


def _blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


def to_sync_requests(raw: DataFrame) -> DataFrame:
    """Parse raw messages into one row each with the request fields and a classification.

    Input: Spark's Kafka columns (``value`` binary or string, ``topic``, ``partition``,
    ``offset``). Output adds ``payload`` (the raw text), ``action``, ``userId``, ``courseId``,
    ``batchId``, ``requestStatus`` (valid | skipped | failed) and ``reason`` (failed only).
    """
    payload = F.col("value").cast("string")
    parsed = F.from_json(payload, SYNC_REQUEST_JSON_SCHEMA, _JSON_OPTIONS)
    edata_text = F.from_json(payload, _EDATA_AS_TEXT, _JSON_OPTIONS)["edata"]
    df = raw.select(
        payload.alias("payload"),
        *[c for c in ("topic", "partition", "offset") if c in raw.columns],
        parsed.alias("_parsed"),
        edata_text.alias("_edata_text"),
    )
    edata = F.col("_parsed.edata")
    action, user, course, batch = (edata[f] for f in ("action", "userId", "courseId", "batchId"))
    is_sync = F.lower(F.trim(F.coalesce(action, F.lit("")))) == SYNC_ACTION

    unparseable = (
        F.col("_parsed").isNull()
        | F.col("_parsed._corrupt_record").isNotNull()
        | ~F.ltrim(F.col("payload")).startswith("{")
    )
    id_problems = [
        F.when(
            _is_non_string(F.col("_edata_text"), name), F.lit(f"edata.{name} is not a string")
        ).when(_blank(value), F.lit(f"edata.{name} is missing or empty"))
        for name, value in (("userId", user), ("courseId", course), ("batchId", batch))
    ]
    id_reason = F.concat_ws("; ", *id_problems)
    reason = (
        F.when(F.col("payload").isNull() | (F.trim(F.col("payload")) == ""), "empty message")
        .when(unparseable, "malformed JSON: not a JSON object")
        .when(_is_non_string(F.col("_edata_text"), "action"), "edata.action is not a string")
        .when(~is_sync, F.lit(None))
        .when(id_reason != "", id_reason)
    )
    status = F.when(reason.isNotNull(), FAILED).when(~is_sync, SKIPPED).otherwise(VALID)
    return (
        df.withColumn("action", action)
        .withColumn("userId", user)
        .withColumn("courseId", course)
        .withColumn("batchId", batch)
        .withColumn("reason", reason)
        .withColumn("requestStatus", status)
        .drop("_parsed", "_edata_text")
    )


def request_counter_columns() -> list[Column]:
    """Aggregate columns counting requests by classification, named as the original counters."""
    status = F.col("requestStatus")
    return [
        F.count(F.lit(1)).alias("total-events-count"),
        F.sum(F.when(status == SKIPPED, 1).otherwise(0)).alias("skipped-events-count"),
        F.sum(F.when(status == FAILED, 1).otherwise(0)).alias("failed-events-count"),
        F.sum(F.when(status == VALID, 1).otherwise(0)).alias("valid-events-count"),
    ]


def filter_valid_requests(requests: DataFrame) -> DataFrame:
    """Keep the requests to reconcile."""
    return requests.where(F.col("requestStatus") == VALID)


def to_enrolment_keys(requests: DataFrame) -> DataFrame:
    """Distinct (userId, courseId, batchId) of the valid requests: each enrolment once a batch."""
    return filter_valid_requests(requests).select(*ENROLMENT_KEY).distinct()


def to_request_failures(requests: DataFrame) -> DataFrame:
    """Failed-topic rows for rejected requests: clean JSON with the reason and raw payload."""
    fields = [F.col("reason"), F.col("payload")]
    source = [F.col(c) for c in ("topic", "partition", "offset") if c in requests.columns]
    if source:
        fields.append(F.struct(*source).alias("source"))
    return requests.where(F.col("requestStatus") == FAILED).select(
        F.col("reason"), F.to_json(F.struct(*fields)).alias("value")
    )
