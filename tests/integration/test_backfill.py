"""The nightly backfill on the real stack: the same results as the stream, filters, dry run,
idempotence, foreign map keys, the lease, and the pushed-down filters in the physical plan."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.sample.data import SampleData, generate_sample
from devkit.sample.loader import load_sample
from enrolment_reconciliation.batch.read import read_in_scope
from enrolment_reconciliation.core.counters import Counter
from enrolment_reconciliation.io.cassandra import ScanFilters, connect
from enrolment_reconciliation.io.lease import Lease, LeaseHeldError
from enrolment_reconciliation.modes.backfill import BackfillOptions, run_backfill
from enrolment_reconciliation.modes.stream import run_stream
from enrolment_reconciliation.runtime.config import JobConfig, load_config
from tests.helpers import (
    as_cli_args,
    events_of,
    json_lines,
    messages_on,
    produce,
    read_tables,
    spark_submit,
    stack_overrides,
    sync_request,
)

pytestmark = pytest.mark.integration
KEYSPACE, STREAM_KEYSPACE, REDIS_DB = "er_test_backfill", "er_test_backfill_stream", 9
SCORES = {"score:do_x": 7.0, "max_score:do_x": 10.0}


def rows_written(counts: dict[str, int]) -> int:
    """Rows a run wrote (0 for a run over unchanged data)."""
    return counts.get(Counter.AGGREGATE_ROWS, 0) + counts.get(Counter.ENROLMENT_UPDATES, 0)


def backfill_config(tmp_path: Path, keyspace: str = KEYSPACE, *extra: str) -> JobConfig:
    env = f"bf{uuid.uuid4().hex[:8]}"
    return load_config(
        env=env,
        overrides=[
            *stack_overrides(keyspace),
            f"redis.database.relationCache.id={REDIS_DB}",
            f"backfill.outbox.location={tmp_path}/outbox",
            f"backfill.staging.location={tmp_path}/staging",
            f"stream.checkpoint.location={tmp_path}/checkpoint",
            "service.search.basePath=http://127.0.0.1:9/search",
            "backfill.lease.seconds=30",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def sample() -> SampleData:
    return generate_sample(seed=11, courses=4, users=60, batches_per_course=2)


def load(cfg: JobConfig, sample: SampleData) -> None:
    load_sample(sample, cfg, truncate=True)


@pytest.fixture
def loaded(sample, tmp_path) -> JobConfig:
    cfg = backfill_config(tmp_path)
    load(cfg, sample)
    return cfg


def test_backfill_gives_the_same_tables_and_events_as_one_sync_request_per_enrolment(
    spark, sample, tmp_path
):
    backfilled = backfill_config(tmp_path / "a")
    streamed = backfill_config(tmp_path / "b", STREAM_KEYSPACE).with_overrides(
        "stream.trigger.mode=available-now"
    )
    load(backfilled, sample)
    load(streamed, sample)  # same rows in a second keyspace; the relation cache is shared
    produce(streamed, [sync_request(*e[:3]).encode() for e in sample.enrolments()])
    run_stream(spark, streamed)
    summary = run_backfill(spark, backfilled, BackfillOptions())

    by_backfill, by_stream = read_tables(backfilled), read_tables(streamed)
    assert by_backfill.enrolments == by_stream.enrolments
    assert by_backfill.aggregates == by_stream.aggregates
    events = events_of(backfilled)
    assert events == events_of(streamed)
    completed = summary["summary"]["newlyCompleted"]
    assert completed > 0 and len(events) == 2 * completed
    assert summary["summary"]["scanned"] == sum(1 for _ in sample.enrolments())


def test_a_second_run_over_unchanged_data_writes_and_emits_nothing(spark, loaded):
    first = run_backfill(spark, loaded, BackfillOptions())
    assert rows_written(first["counters"]) > 0
    tables = read_tables(loaded)
    second = run_backfill(spark, loaded, BackfillOptions())
    counters = second["counters"]
    assert rows_written(counters) == 0
    assert counters[Counter.AGGREGATE_WRITES] == 0
    assert counters[Counter.CERT_EVENTS] == counters[Counter.AUDIT_EVENTS] == 0
    recomputed = first["summary"]["changed"] + first["summary"]["unchanged"]
    assert counters[Counter.ENROLMENTS_UNCHANGED] == recomputed
    assert counters[Counter.AGGREGATES_UNCHANGED] == first["counters"][Counter.AGGREGATE_ROWS]
    assert read_tables(loaded) == tables
    assert len(events_of(loaded)) == 2 * first["summary"]["newlyCompleted"]


def test_filters_select_exactly_the_named_courses_batches_and_users(spark, sample, tmp_path):
    enrolments = list(sample.enrolments())
    course = sample.courses[0].course_id
    batch = sample.courses[1].batch_ids[0]
    users = sorted({e.userid for e in enrolments})[:5]
    users_file = tmp_path / "users.txt"
    users_file.write_text("\n".join(users) + "\n\n")
    cases = [
        (BackfillOptions(courses=(course,)), lambda e: e.courseid == course),
        (BackfillOptions(batches=(batch,)), lambda e: e.batchid == batch),
        # a URI: any Hadoop path the cluster sees
        (BackfillOptions(users_file=users_file.as_uri()), lambda e: e.userid in users),
        (
            BackfillOptions(courses=(course,), users_file=str(users_file)),
            lambda e: e.courseid == course and e.userid in users,
        ),
    ]
    consumed = {(r.userid, r.courseid, r.batchid) for r in sample.consumption()}
    for options, selected in cases:
        cfg = backfill_config(tmp_path / uuid.uuid4().hex[:6])
        load(cfg, sample)
        before = read_tables(cfg)
        summary = run_backfill(spark, cfg, options)
        after = read_tables(cfg)
        in_scope = {tuple(e[:3]) for e in enrolments if selected(e)}
        assert summary["summary"]["scanned"] == len(in_scope), options
        touched = {k for k, v in after.enrolments.items() if before.enrolments[k] != v}
        assert touched and touched <= in_scope, options
        written = {(user, context) for (_, user, context) in after.aggregates}
        expected = {(u, f"cb:{b}") for (u, c, b) in in_scope if (u, c, b) in consumed}
        assert written == expected, options


def test_dry_run_touches_nothing_and_reports_what_the_real_run_then_does(spark, loaded, tmp_path):
    report = tmp_path / "report"
    before = read_tables(loaded)
    # a URI (file://, hdfs://, ...): every file goes through Hadoop's FileSystem
    dry = run_backfill(spark, loaded, BackfillOptions(dry_run=report.as_uri()))
    assert read_tables(loaded) == before
    assert events_of(loaded) == {}
    assert messages_on(loaded, loaded.kafka.failed_topic) == []

    written = json.loads((report / "summary.json").read_text())
    assert written["summary"] == dry["summary"]
    assert (report / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (report / "changes.csv").read_text().splitlines()
    header, rows = lines[0].split(","), [line.split(",") for line in lines[1:]]
    assert header[:5] == ["userid", "courseid", "batchid", "statusBefore", "status"]
    certificates = [
        json.loads(line) for line in (report / "certificate-events.jsonl").read_text().splitlines()
    ]

    real = run_backfill(spark, loaded, BackfillOptions())
    assert real["summary"] == dry["summary"]
    after = read_tables(loaded)
    changed = {k for k, v in after.enrolments.items() if before.enrolments[k] != v}
    assert {tuple(r[:3]) for r in rows} == changed
    for row in rows:
        assert (int(row[4]), int(row[6])) == after.enrolments[tuple(row[:3])][:2]
    published = {m for m, e in events_of(loaded).items() if e["eid"] == "BE_JOB_REQUEST"}
    assert {c["mid"] for c in certificates} == published
    assert len(published) == dry["summary"]["newlyCompleted"] > 0


def test_foreign_map_keys_and_untouched_columns_survive(spark, loaded, sample):
    enrolment = next(
        e
        for e in sample.enrolments()
        if e.status != 2
        and any((r.userid, r.courseid, r.batchid) == tuple(e[:3]) for r in sample.consumption())
    )
    user, course, batch = enrolment[:3]
    cluster, session = connect(loaded.cassandra, keyspace=loaded.cassandra.keyspace)
    try:
        session.execute(
            "UPDATE user_activity_agg SET aggregates = aggregates + %s,"
            " agg_last_updated = agg_last_updated + %s, agg_details = ['kept']"
            " WHERE activity_type = 'Course' AND activity_id = %s AND user_id = %s"
            " AND context_id = %s",
            (SCORES, dict.fromkeys(SCORES, enrolment.datetime), course, user, f"cb:{batch}"),
        )
        session.execute(
            "UPDATE user_enrolments SET addedby = 'admin', lastreadcontentid = 'do_last',"
            " certstatus = 3 WHERE userid = %s AND courseid = %s AND batchid = %s",
            (user, course, batch),
        )
        run_backfill(spark, loaded, BackfillOptions())
        agg = session.execute(
            "SELECT aggregates, agg_last_updated, agg_details FROM user_activity_agg"
            " WHERE activity_type = 'Course' AND activity_id = %s AND user_id = %s"
            " AND context_id = %s",
            (course, user, f"cb:{batch}"),
        ).one()
        row = session.execute(
            "SELECT addedby, lastreadcontentid, certstatus, active, enrolled_date, datetime"
            " FROM user_enrolments WHERE userid = %s AND courseid = %s AND batchid = %s",
            (user, course, batch),
        ).one()
    finally:
        cluster.shutdown()
    assert {k: agg.aggregates[k] for k in SCORES} == SCORES
    assert "completedCount" in agg.aggregates
    assert set(agg.agg_last_updated) == {"completedCount", *SCORES}
    assert agg.agg_details == ["kept"]
    assert (row.addedby, row.lastreadcontentid, row.certstatus) == ("admin", "do_last", 3)
    assert (row.active, row.enrolled_date) == (True, enrolment.enrolled_date.replace(tzinfo=None))
    assert row.datetime != enrolment.datetime.replace(tzinfo=None)  # this row was rewritten


@pytest.fixture
def lease_session(loaded) -> Iterator:
    cluster, session = connect(loaded.cassandra, keyspace=loaded.cassandra.keyspace)
    yield session
    session.execute(f"TRUNCATE {loaded.backfill.lease_table}")
    cluster.shutdown()


def test_a_second_backfill_is_refused_while_one_holds_the_lease(spark, loaded, lease_session):
    other = Lease(
        lease_session,
        keyspace=loaded.cassandra.keyspace,
        table=loaded.backfill.lease_table,
        seconds=60,
    )
    other.acquire("backfill")
    with pytest.raises(LeaseHeldError, match=f"lease is held by {other.owner}"):
        run_backfill(spark, loaded, BackfillOptions())
    other.release("backfill")
    assert run_backfill(spark, loaded, BackfillOptions())["summary"]["scanned"] > 0


def test_an_expired_lease_is_taken_over(spark, loaded, lease_session):
    crashed = Lease(
        lease_session,
        keyspace=loaded.cassandra.keyspace,
        table=loaded.backfill.lease_table,
        seconds=2,
    )
    crashed.acquire("backfill")  # and never renewed nor released: a crashed run
    time.sleep(3)
    assert run_backfill(spark, loaded, BackfillOptions())["summary"]["scanned"] > 0
    assert crashed.holder("backfill") is None  # released by the run that took it over


def test_pushed_down_filters_in_the_physical_plan(spark, tmp_path):
    cfg = backfill_config(tmp_path)
    users = spark.createDataFrame([("u1",)], "userid string")
    frames = read_in_scope(spark, cfg, ScanFilters(courses=("c1", "c2"), batches=("b1",)))
    plan = frames.progress._jdf.queryExecution().executedPlan().toString()
    pushed = 'Cassandra Filters: [["courseid" IN (?, ?), (c1, c2)],["batchid" = ?, b1]]'
    assert plan.count(pushed) == 2, plan  # user_enrolments and user_content_consumption
    by_users = read_in_scope(spark, cfg, ScanFilters(users=users))
    users_plan = by_users.progress._jdf.queryExecution().executedPlan().toString()
    assert users_plan.count("Cassandra Direct Join [userid = userid#") == 2, users_plan
    batches_only = read_in_scope(spark, cfg, ScanFilters(batches=("b1",)))
    batch_plan = batches_only.progress._jdf.queryExecution().executedPlan().toString()
    # courseid precedes batchid in the clustering key: a batch alone is filtered by Spark
    assert batch_plan.count("Cassandra Filters: []") == 2, batch_plan
    assert batch_plan.count("Filter (batchid#") == 2, batch_plan


def test_backfill_command_line_exit_codes(loaded, lease_session, tmp_path):
    args = [
        "--env",
        loaded.env,
        *as_cli_args(
            [
                *stack_overrides(KEYSPACE),
                f"redis.database.relationCache.id={REDIS_DB}",
                f"backfill.outbox.location={tmp_path}/outbox",
            ]
        ),
    ]
    holder = Lease(
        lease_session,
        keyspace=loaded.cassandra.keyspace,
        table=loaded.backfill.lease_table,
        seconds=120,
    )
    holder.acquire("backfill")
    refused = spark_submit("backfill", args)
    assert refused.returncode == 3, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert f"another backfill is running: the lease is held by {holder.owner}" in refused.stderr
    holder.release("backfill")
    summary_file = tmp_path / "summary.json"
    done = spark_submit("backfill", [*args, "--summary", str(summary_file)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(summary_file.read_text())
    assert summary["summary"]["scanned"] > 0 and summary["summary"]["changed"] > 0
    phases = [line["phase"] for line in json_lines(done.stderr, "phase")]
    # users counted to plan the slices (one here), the outbox of crashed runs, the slices
    assert phases == ["slice-users", "recover-outbox", "slices", "record-run"]
    assert list(summary["phases"]) == [*phases, "read-and-reconcile", "write-and-publish"]
    [line] = json_lines(done.stderr, "slice")
    assert (line["done"], line["of"], line["enrolments"]) == (1, 1, summary["summary"]["scanned"])
