"""Malformed and hostile sync requests, each with what the job must make of it.

``expected`` is the failed-topic reason, or ``VALID`` (reconciled like any request: a hostile id
that is a legal id is only ever a bound value) or ``SKIPPED`` (not a sync request). Used by the
core classification test and by the stream test that mixes the corpus into valid batches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

VALID, SKIPPED = "valid", "skipped"
ACTION = "user-enrolment-sync"
ID_LIMIT = "ids are limited to 1024 bytes"


@dataclass(frozen=True)
class Hostile:
    name: str
    payload: bytes | None
    expected: str


def _request(**edata: object) -> bytes:
    return json.dumps({"eid": "BE_JOB_REQUEST", "edata": edata}, ensure_ascii=False).encode()


def _sync(user: object = "u", course: object = "c", batch: object = "b", **more: object) -> bytes:
    return _request(action=ACTION, userId=user, courseId=course, batchId=batch, **more)


def _raw(text: str) -> bytes:
    return text.encode()


_GOOD = _sync("hostile-user", "hostile-course", "hostile-batch").decode()
_NOT_STRING = "edata.userId is not a string"
_MISSING = "edata.userId is missing or empty"
_CONTROL = "edata.userId contains control characters"
_MALFORMED = "malformed JSON"
_NOT_OBJECT = "the message is JSON but not an object"
_EDATA = "edata is not a JSON object"

CORPUS: list[Hostile] = [
    # not JSON at all, or not whole
    Hostile("plain text", b"definitely not json", _MALFORMED),
    Hostile("truncated JSON", _GOOD[:40].encode(), _MALFORMED),
    Hostile("truncated at the last brace", _GOOD[:-1].encode(), _MALFORMED),
    Hostile("trailing garbage", (_GOOD + " trailing").encode(), _MALFORMED),
    Hostile("two objects", (_GOOD + _GOOD).encode(), _MALFORMED),
    Hostile("comment in JSON", _raw('/* x */ {"edata": {}}'), _MALFORMED),
    Hostile("deep nesting, whole message", _raw("[" * 5000 + "]" * 5000), _MALFORMED),
    Hostile(
        "deep nesting inside edata",
        _raw(_GOOD[:-2] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}}"),
        _MALFORMED,
    ),
    Hostile("binary", bytes(range(256)), "not UTF-8 text"),
    Hostile("latin-1 bytes", '{"edata": "caf\xe9"}'.encode("latin-1"), "not UTF-8 text"),
    Hostile("empty", b"", "empty message"),
    Hostile("whitespace only", b" \n\t ", "empty message"),
    Hostile("tombstone", None, "empty message: the Kafka record has no value (a tombstone)"),
    # JSON, but not an object, or edata not an object
    Hostile("JSON null", b"null", _NOT_OBJECT),
    Hostile("JSON array", b"[1, 2]", _NOT_OBJECT),
    Hostile("JSON number", b"42", _NOT_OBJECT),
    Hostile("JSON string", b'"user-enrolment-sync"', _NOT_OBJECT),
    Hostile("JSON boolean", b"true", _NOT_OBJECT),
    Hostile("edata null", b'{"edata": null}', SKIPPED),  # as absent: no action
    Hostile("edata string", b'{"edata": "user-enrolment-sync"}', _EDATA),
    Hostile("edata array", b'{"edata": []}', _EDATA),
    Hostile("edata number", b'{"edata": 5}', _EDATA),
    Hostile("no edata", b'{"eid": "BE_JOB_REQUEST"}', SKIPPED),
    Hostile("empty object", b"{}", SKIPPED),
    Hostile("edata empty object", b'{"edata": {}}', SKIPPED),
    # action
    Hostile("action absent", _request(userId="u", courseId="c", batchId="b"), SKIPPED),
    Hostile("action null", _request(action=None, userId="u", courseId="c", batchId="b"), SKIPPED),
    Hostile("other action", _request(action="batch-enrolment-update", userId="u"), SKIPPED),
    Hostile(
        "action a number",
        _request(action=5, userId="u", courseId="c", batchId="b"),
        "edata.action is not a string",
    ),
    Hostile(
        "action a list",
        _request(action=[ACTION], userId="u", courseId="c", batchId="b"),
        "edata.action is not a string",
    ),
    Hostile(
        "action in capitals",
        _request(action=ACTION.upper(), userId="hostile-caps", courseId="c", batchId="b"),
        VALID,
    ),
    # ids: missing, empty, wrong types at every level
    Hostile("userId absent", _request(action=ACTION, courseId="c", batchId="b"), _MISSING),
    Hostile("userId null", _sync(user=None), _MISSING),
    Hostile("userId empty", _sync(user=""), _MISSING),
    Hostile("userId whitespace", _sync(user="   "), _MISSING),
    Hostile("userId a number", _sync(user=123), _NOT_STRING),
    Hostile("userId a huge number", _raw(_GOOD.replace('"hostile-user"', "1e400")), _NOT_STRING),
    Hostile("userId true", _sync(user=True), _NOT_STRING),
    Hostile("userId NaN", _raw(_GOOD.replace('"hostile-user"', "NaN")), _MALFORMED),
    Hostile("userId the string Infinity", _sync("Infinity", "hostile-course", "b"), VALID),
    Hostile("userId the quoted string Infinity", _sync('"Infinity"', "c", "b"), VALID),
    Hostile("userId an object", _sync(user={"$ne": None}), _NOT_STRING),
    Hostile("userId a list", _sync(user=["u"]), _NOT_STRING),
    Hostile(
        "every id wrong",
        _sync(user=1, course=None, batch=[]),
        "edata.userId is not a string; edata.courseId is missing or empty;"
        " edata.batchId is not a string",
    ),
    Hostile("courseId empty", _sync(course=""), "edata.courseId is missing or empty"),
    Hostile("batchId an object", _sync(batch={}), "edata.batchId is not a string"),
    # ids past every store's key limit
    Hostile(
        "userId 1 MB",
        _sync(user="u" * 1_000_000),
        f"edata.userId is 1000000 bytes long; {ID_LIMIT}",
    ),
    Hostile(
        "courseId past Cassandra's 65535-byte key",
        _sync(course="c" * 70_000),
        f"edata.courseId is 70000 bytes long; {ID_LIMIT}",
    ),
    Hostile(
        "batchId 2 KB", _sync(batch="b" * 2048), f"edata.batchId is 2048 bytes long; {ID_LIMIT}"
    ),
    Hostile(
        "multi-byte id past the limit",
        _sync(user="ü" * 600),
        f"edata.userId is 1200 bytes long; {ID_LIMIT}",
    ),
    # control characters, unicode
    Hostile("NUL in userId", _sync(user="a\x00b"), _CONTROL),
    Hostile("newline in userId", _sync(user="a\nb"), _CONTROL),
    Hostile("tab in userId", _sync(user="a\tb"), _CONTROL),
    Hostile("escape char in userId", _sync(user="a\x1bb"), _CONTROL),
    Hostile(
        "unpaired high surrogate",
        _raw(_GOOD.replace("hostile-user", "u\\ud800")),
        "the message holds an unpaired UTF-16 surrogate escape: not Unicode text",
    ),
    Hostile(
        "unpaired low surrogate",
        _raw(_GOOD.replace("hostile-user", "u\\udc00x")),
        "the message holds an unpaired UTF-16 surrogate escape: not Unicode text",
    ),
    Hostile(
        "paired surrogate escape", _raw(_GOOD.replace("hostile-user", "u\\ud83d\\ude00")), VALID
    ),
    Hostile("unicode ids", _sync("ユーザー😀", "코스", "бatch"), VALID),  # noqa: RUF001 (hostile on purpose)
    Hostile("line separator in id", _sync(user="a\u2028b"), VALID),
    # duplicated keys
    Hostile(
        "userId twice",
        _raw(
            '{"edata": {"action": "user-enrolment-sync", "userId": "a", "userId": "b",'
            ' "courseId": "c", "batchId": "b"}}'
        ),
        "edata.userId appears more than once",
    ),
    Hostile(
        "batchId twice",
        _raw(
            '{"edata": {"action": "user-enrolment-sync", "userId": "a", "courseId": "c",'
            ' "batchId": "b", "batchId": "b"}}'
        ),
        "edata.batchId appears more than once",
    ),
    # quotes, semicolons and CQL fragments: legal ids, only ever bound values
    Hostile("quote in userId", _sync(user="o'brien\"x"), VALID),
    Hostile("CQL in courseId", _sync(course="c'); DROP KEYSPACE sunbird_courses; --"), VALID),
    Hostile("semicolons", _sync(batch="b;b;b"), VALID),
    Hostile("CQL comment", _sync(user="u -- /* */"), VALID),
    Hostile("spaces around id", _sync(user=" padded "), VALID),
    # big but legal
    Hostile("900 KB in another field", _sync("hostile-big", "c", "b", note="x" * 900_000), VALID),
    Hostile("BOM before JSON", b"\xef\xbb\xbf" + _GOOD.encode(), _MALFORMED),
]
