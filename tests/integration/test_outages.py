"""Service outages while the stream runs (``--trigger processing-time=1s``), docs/design.md §4:
Cassandra stopped and restarted, Redis stopped and restarted, the Kafka broker restarted, the
search service answering 500s and timing out. Requests are sent before and during each outage;
after recovery every one of them is applied (or, for the search route, reported) and nothing is
lost. The job retries failed micro-batches from its checkpoint; a micro-batch that hangs is
cancelled by the batch watchdog and retried like any other.

On demand: ``./dev.sh test -m faults tests/integration/test_outages.py`` (docs/reliability.md);
``ER_OUTAGE_SECONDS=60`` keeps each service away longer (default 30).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from devkit.paths import PROJECT_ROOT
from devkit.stack import StreamProcess
from enrolment_reconciliation.io.relation_cache import redis_client
from enrolment_reconciliation.runtime.config import JobConfig
from tests.helpers import (
    CASE_2,
    config_for,
    messages_on,
    produce,
    seed,
    sync_request,
)
from tests.search_stub import SearchStub

pytestmark = [pytest.mark.integration, pytest.mark.faults]

OUTAGE_SECONDS = int(os.environ.get("ER_OUTAGE_SECONDS", "30"))  # how long each service is away
STREAM_SETTINGS: list[str] = []  # the defaults, as an operator runs the stream


def _stack(action: str, service: str) -> None:
    subprocess.run(
        ["bash", str(PROJECT_ROOT / "stack" / "stack.sh"), action, service],
        check=True,
        capture_output=True,
        timeout=400,
    )


def _learners(cql, prefix: str, count: int) -> list[str]:
    """Learners of course001 who consumed every leaf: each request completes one enrolment."""
    users = [f"{prefix}{i:02d}" for i in range(count)]
    _enrol(cql, users, "course001", "Batch1", ("R1", "R2", "R3"))
    return users


def _enrol(cql, users: list[str], course: str, batch: str, consumed: tuple[str, ...]) -> None:
    """Enrol ``users`` in ``course``/``batch``, each having completed the ``consumed`` contents."""
    consumption = cql.prepare(
        "INSERT INTO user_content_consumption (userid, courseid, batchid, contentid, status)"
        " VALUES (?, ?, ?, ?, 2)"
    )
    enrolment = cql.prepare(
        "INSERT INTO user_enrolments (userid, courseid, batchid, status, active)"
        " VALUES (?, ?, ?, 1, true)"
    )
    for user in users:
        for content in consumed:
            cql.execute(consumption, (user, course, batch, content))
        cql.execute(enrolment, (user, course, batch))


def _completed(cql, users: list[str]) -> set[str]:
    for _ in range(30):
        try:
            rows = cql.execute(
                "SELECT userid, status FROM user_enrolments WHERE courseid='course001'"
                " AND batchid='Batch1' ALLOW FILTERING"
            )
            return {r.userid for r in rows if r.status == 2} & set(users)
        except Exception:  # Cassandra still coming back
            time.sleep(2)
    raise TimeoutError("Cassandra did not answer")


def _certificates(cfg: JobConfig) -> set[str]:
    return {c["edata"]["userIds"][0] for c in messages_on(cfg, cfg.kafka.certissue_topic, 2000)}


def _wait(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} not within {timeout}s:\n{log.read_text()[-4000:]}")
        time.sleep(1)
    return time.monotonic() - started


def _outage(
    cql,
    tmp_path: Path,
    name: str,
    inject: Callable[[JobConfig], None],
    recover: Callable[[JobConfig], None],
    *,
    produce_during: bool = True,
    extra: tuple[str, ...] = (),
) -> dict[str, object]:
    env = f"{name}{uuid.uuid4().hex[:6]}"
    cfg, args = config_for(env, tmp_path)
    seed(cql, cfg)
    before, during = _learners(cql, "pre", 4), _learners(cql, "dur", 4)
    sets = [a for s in (*STREAM_SETTINGS, *extra) for a in ("--set", s)]
    stream = StreamProcess([*args, *sets], tmp_path / "stream.log", supervise=True)
    try:
        produce(cfg, [sync_request(u, "course001", "Batch1").encode() for u in before])
        _wait(lambda: _completed(cql, before) == set(before), 300, "first requests", stream.log)
        inject(cfg)
        down = time.monotonic()
        if produce_during:
            produce(cfg, [sync_request(u, "course001", "Batch1").encode() for u in during])
        time.sleep(OUTAGE_SECONDS)
        recover(cfg)
        back = time.monotonic()
        if not produce_during:
            produce(cfg, [sync_request(u, "course001", "Batch1").encode() for u in during])
        everyone = before + during
        recovery = _wait(
            lambda: _completed(cql, everyone) == set(everyone), 600, "recovery", stream.log
        )
        # the enrolment rows are written before the events are published: wait for those too
        _wait(lambda: _certificates(cfg) >= set(everyone), 180, "certificate requests", stream.log)
        restarts = stream.failed_batches()
        alive = stream.alive()
        process_restarts = stream.process_restarts
    finally:
        stream.stop()
    assert alive, stream.log.read_text()[-4000:]
    assert _certificates(cfg) >= set(everyone)  # every completion's certificate delivered
    figures = {
        "outage": name,
        "env": env,
        "downSeconds": round(back - down, 1),
        "appliedSecondsAfterRecovery": round(recovery, 1),
        "queryRestarts": restarts,
        "processRestarts": process_restarts,
        "requests": len(everyone),
        "lost": len(set(everyone) - _completed(cql, everyone)),
    }
    print("outage:", json.dumps(figures))
    return figures


def test_cassandra_stopped_and_restarted(cql, tmp_path):
    figures = _outage(
        cql,
        tmp_path,
        "cass",
        lambda cfg: _stack("stop", "cassandra"),
        lambda cfg: _stack("start", "cassandra"),
    )
    assert figures["lost"] == 0


def test_redis_stopped_and_restarted(cql, tmp_path):
    def back(cfg: JobConfig) -> None:
        _stack("start", "redis")
        client = redis_client(cfg.redis)  # the local Redis keeps no data across a restart
        for key, members in CASE_2.items():
            client.sadd(key, *members)
        client.close()

    # no driver-side copy of the relation cache: every micro-batch must ask Redis
    figures = _outage(
        cql,
        tmp_path,
        "redis",
        lambda cfg: _stack("stop", "redis"),
        back,
        extra=("relation-cache.ttl=0",),
    )
    assert figures["queryRestarts"] >= 1  # Redis being down did fail micro-batches
    assert figures["lost"] == 0


def test_kafka_broker_restarted(cql, tmp_path):
    figures = _outage(
        cql,
        tmp_path,
        "kafka",
        lambda cfg: _stack("stop", "kafka"),
        lambda cfg: _stack("start", "kafka"),
        produce_during=False,  # nothing can be produced while the only broker is down
    )
    assert figures["lost"] == 0


@pytest.mark.parametrize("failure", ["500", "timeout"])
def test_search_service_failing_then_recovering(cql, tmp_path, failure):
    """Course008 has no leafnodes: each of its requests asks the search service. While the
    service fails, those micro-batches fail and are retried; afterwards each request lands on
    the failed topic with the published-without-leafnodes reason, and course001 is applied."""
    with SearchStub({"course008": "Live"}) as stub:

        def inject(cfg: JobConfig) -> None:
            if failure == "500":
                stub.fail_with = 500
            else:
                stub.delay_seconds = 15  # past the job's 10 s search timeout
            _enrol(cql, ["dur00", "dur01"], "course008", "Batch8", ("R1",))
            client = redis_client(cfg.redis)
            client.sadd("course008:R1:ancestors", "course008")
            client.close()
            produce(
                cfg, [sync_request(u, "course008", "Batch8").encode() for u in ("dur00", "dur01")]
            )

        def recover(cfg: JobConfig) -> None:
            stub.fail_with, stub.delay_seconds = None, 0.0

        figures = _outage(
            cql,
            tmp_path,
            f"search{failure}",
            inject,
            recover,
            extra=(f"service.search.basePath={stub.base_path}",),
        )
        cfg = config_for(str(figures["env"]), tmp_path)[0]
        failed = {
            (f["userId"], f["reason"])
            for f in messages_on(cfg, cfg.kafka.failed_topic)
            if f.get("courseId") == "course008"
        }
    assert figures["lost"] == 0
    assert figures["queryRestarts"] >= 1  # the failing service did fail micro-batches
    reason = "leaf nodes are not available for a published collection: course008"
    assert failed == {("dur00", reason), ("dur01", reason)}
