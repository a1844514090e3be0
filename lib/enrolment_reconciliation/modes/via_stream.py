"""``sync --via-stream``: ask the running stream to sync one enrolment and wait for its answer.

No Spark on the caller's side: one message to the stream's input topic, then polls of what the
stream's answer changes until it is known:

- the stream's commit log (its checkpoint, when on a path this process reads) shows a finished
  micro-batch past the request's offset: applied (a micro-batch commits after its writes and
  events), possibly changing nothing;
- without a readable commit log, the enrolment row or its course aggregates change (read
  through one Cassandra session) and stay so for ``SETTLE_SECONDS``: applied (aggregates are
  written before the enrolment row, so the printed state is the whole write);
- a failed event on the failed topic names the request (its topic, partition and offset) or the
  enrolment (a course without structure): the reason is printed.

A timeout says that no stream answered, and where to look.

Example::

    result = sync_via_stream(cfg, "u1", "C1", "B1", timeout=30)
    result["changed"], result["seconds"]
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from enrolment_reconciliation.io.cassandra import connect
from enrolment_reconciliation.io.kafka import python_client_options
from enrolment_reconciliation.modes.enrolment_state import (
    read_enrolment_state,
    sync_request_payload,
)
from enrolment_reconciliation.runtime.config import JobConfig

POLL_SECONDS = 0.1
PUBLISH_TIMEOUT_SECONDS = 15.0  # the request's own send (a new topic's metadata, acks="all")
DRAIN_SECONDS = 5.0  # reading the failed topic to its end once the request's batch committed
SETTLE_SECONDS = 0.5  # without the commit log: a change unchanged this long is the whole write


class NoStreamAnswerError(Exception):
    """No stream answered the request in time."""


class RequestFailedError(Exception):
    """The stream rejected the request or could not compute it; ``reason`` says why."""

    def __init__(self, reason: str, *, structure: bool, result: dict[str, Any]) -> None:
        super().__init__(reason)
        self.reason, self.structure, self.result = reason, structure, result


def committed_offsets(checkpoint: str) -> dict[str, dict[int, int]] | None:
    """The end offsets (exclusive) of the last finished micro-batch of the query checkpointed
    at ``checkpoint``, per topic and partition; None when it is not on a local path or has no
    finished batch."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", checkpoint) and not checkpoint.startswith("file://"):
        return None
    root = Path(checkpoint.removeprefix("file://"))
    commits = root / "commits"
    try:
        finished = [int(p.name) for p in commits.iterdir() if p.name.isdigit()]
    except OSError:
        return None
    if not finished:
        return None
    lines = (root / "offsets" / str(max(finished))).read_text().splitlines()
    offsets: dict[str, dict[int, int]] = {}
    for line in lines[2:]:  # "v1", the batch metadata, then one line per source
        for topic, partitions in json.loads(line).items():
            offsets[topic] = {int(p): int(o) for p, o in partitions.items()}
    return offsets


def _names_request(event: dict[str, Any], topic: str, partition: int, offset: int) -> bool:
    source = event.get("source") or {}
    return (source.get("topic"), source.get("partition"), source.get("offset")) == (
        topic,
        partition,
        offset,
    )


def _names_enrolment(event: dict[str, Any], user: str, course: str, batch: str) -> bool:
    return (event.get("userId"), event.get("courseId"), event.get("batchId")) == (
        user,
        course,
        batch,
    )


class _Watch:
    """What the caller polls: the failed topic from its end, the enrolment, the commit log."""

    def __init__(self, cfg: JobConfig, user: str, course: str, batch: str) -> None:
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        self.cfg, self.key = cfg, (user, course, batch)
        options = python_client_options(cfg.kafka)
        self.cluster, self.session = connect(cfg.cassandra, keyspace=cfg.cassandra.keyspace)
        self.producer = KafkaProducer(acks="all", **options)
        self.failed = KafkaConsumer(enable_auto_commit=False, group_id=None, **options)
        partitions = self.failed.partitions_for_topic(cfg.kafka.failed_topic) or {0}
        assigned = [TopicPartition(cfg.kafka.failed_topic, p) for p in partitions]
        self.failed.assign(assigned)
        self.failed.seek_to_end(*assigned)
        for tp in assigned:  # resolve the end now: only events after the request count
            self.failed.position(tp)
        self.assigned = assigned

    def state(self) -> dict[str, Any]:
        return read_enrolment_state(self.session, self.cfg, *self.key)

    def failure(
        self, partition: int, offset: int, *, drain: bool = False
    ) -> tuple[str, bool] | None:
        """The reason of a failed event about this request (and whether it is a structure's).
        ``drain``: read the failed topic up to its end first (the micro-batch has committed, so
        whatever it published is there; a poll alone returns only what was fetched)."""
        if drain:
            ends = self.failed.end_offsets(self.assigned)
            until = time.monotonic() + DRAIN_SECONDS
            while time.monotonic() < until:
                found = self._scan(self.failed.poll(timeout_ms=100), partition, offset)
                if found is not None:
                    return found
                if all(self.failed.position(tp) >= end for tp, end in ends.items()):
                    return None
            return None
        return self._scan(self.failed.poll(timeout_ms=0), partition, offset)

    def _scan(
        self, polled: dict[Any, list[Any]], partition: int, offset: int
    ) -> tuple[str, bool] | None:
        for records in polled.values():
            for record in records:
                try:
                    event = json.loads(record.value)
                except (TypeError, ValueError):
                    continue
                if _names_request(event, self.cfg.kafka.input_topic, partition, offset):
                    return str(event.get("reason")), False
                if _names_enrolment(event, *self.key):
                    return str(event.get("reason")), True
        return None

    def close(self) -> None:
        self.producer.close()
        self.failed.close()
        self.cluster.shutdown()


def sync_via_stream(
    cfg: JobConfig, user: str, course: str, batch: str, *, timeout: float
) -> dict[str, Any]:
    """Publish a sync request for the running stream and wait for its outcome.

    Raises :class:`RequestFailedError` (the stream's reason) or :class:`NoStreamAnswerError`.
    """
    started = time.monotonic()
    watch = _Watch(cfg, user, course, batch)
    try:
        before = watch.state()
        sent = watch.producer.send(
            cfg.kafka.input_topic, sync_request_payload(user, course, batch), key=user.encode()
        ).get(timeout=PUBLISH_TIMEOUT_SECONDS)
        partition, offset = sent.partition, sent.offset
        result: dict[str, Any] = {
            "enrolment": {"userId": user, "courseId": course, "batchId": batch},
            "request": {"topic": cfg.kafka.input_topic, "partition": partition, "offset": offset},
            "before": before,
        }
        deadline = time.monotonic() + timeout  # the answer's wait starts once it is sent
        seen, seen_since = before, time.monotonic()
        while time.monotonic() < deadline:
            failure = watch.failure(partition, offset)
            if failure is not None:
                reason, structure = failure
                result |= {"after": watch.state(), "failed": reason}
                raise RequestFailedError(reason, structure=structure, result=result)
            state = watch.state()
            if state != seen:
                seen, seen_since = state, time.monotonic()
            committed = committed_offsets(cfg.locations.stream_query)
            if committed is not None:
                done = committed.get(cfg.kafka.input_topic, {}).get(partition, -1) > offset
            else:
                done = state != before and time.monotonic() - seen_since >= SETTLE_SECONDS
            if done and committed is not None:
                failure = watch.failure(partition, offset, drain=True)
                if failure is not None:
                    reason, structure = failure
                    result |= {"after": watch.state(), "failed": reason}
                    raise RequestFailedError(reason, structure=structure, result=result)
            if done:
                result |= {"after": state, "changed": state != before}
                result["seconds"] = round(time.monotonic() - started, 3)
                return result
            time.sleep(POLL_SECONDS)
    finally:
        watch.close()
    raise NoStreamAnswerError(
        f"no stream answered within {timeout:g} s: the request is on {cfg.kafka.input_topic}"
        f" (partition {partition}, offset {offset}) and will be applied when a stream consumes"
        f" it; is one running with this config (checkpoint {cfg.locations.stream_checkpoint})?"
    )
