"""The sliced backfill on the real stack: the same tables, events and dry-run report in several
slices as in one, with and without filters; a run killed after a slice resumes where it stopped
(and after a crash between a slice's writes and its publish, loses no event); a failed slice is
retried; ``--restart`` starts over. The kills are in-process (the run dies at a fault point);
the SIGKILL of a real process is the cold benchmark instrument's, run by test_benchmarks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from devkit.sample.data import SampleData, generate_sample
from enrolment_reconciliation.batch.milestones import AFTER_ENROLMENT_WRITE, AFTER_SLICE_RECORDED
from enrolment_reconciliation.io.backfill_runs import RunRecords
from enrolment_reconciliation.io.cassandra import connect
from enrolment_reconciliation.io.outbox import Outbox
from enrolment_reconciliation.modes import backfill
from enrolment_reconciliation.modes.backfill import BackfillOptions, run_backfill
from enrolment_reconciliation.modes.backfill import run as backfill_run
from enrolment_reconciliation.modes.backfill.report import CHANGE_COLUMNS
from enrolment_reconciliation.runtime.config import JobConfig
from tests.helpers import (
    KilledAtFaultPoint,
    events_of,
    messages_on,
    read_tables,
)
from tests.integration.test_backfill import KEYSPACE, STREAM_KEYSPACE, load
from tests.integration.test_backfill import backfill_config as _config

pytestmark = pytest.mark.integration
SLICES = 4


def sliced(tmp_path: Path, keyspace: str = KEYSPACE, slices: int = SLICES) -> JobConfig:
    return _config(tmp_path, keyspace, f"backfill.slices={slices}")


@pytest.fixture(scope="module")
def sample() -> SampleData:
    return generate_sample(seed=23, courses=4, users=60, batches_per_course=2)


@pytest.fixture(autouse=True)
def no_earlier_runs(tmp_path) -> None:
    """Each test starts with no recorded run (an earlier test's could be resumed)."""
    cfg = sliced(tmp_path)
    cluster, session = connect(cfg.cassandra)
    try:
        for keyspace in (KEYSPACE, STREAM_KEYSPACE):
            RunRecords(session, keyspace=keyspace, table=cfg.backfill.runs_table)
            session.execute(f"TRUNCATE {keyspace}.{cfg.backfill.runs_table}")
    finally:
        cluster.shutdown()


def finished_slices(cfg: JobConfig, run_id: str) -> dict[int, dict]:
    cluster, session = connect(cfg.cassandra, keyspace=cfg.cassandra.keyspace)
    try:
        rows = session.execute(
            f"SELECT run_id, slice, counts, finished_at FROM {cfg.backfill.runs_table}"
        )
        return {
            r.slice: dict(r.counts)
            for r in rows
            if r.run_id == run_id and r.slice >= 0 and r.finished_at is not None
        }
    finally:
        cluster.shutdown()


def test_several_slices_give_the_tables_and_events_of_one(spark, sample, tmp_path):
    one, many = _config(tmp_path / "one", STREAM_KEYSPACE, "backfill.slices=1"), sliced(tmp_path)
    users = sorted({e.userid for e in sample.enrolments()})[::3]
    users_file = tmp_path / "users.txt"
    users_file.write_text("\n".join(users) + "\n")
    for options in (
        BackfillOptions(),
        BackfillOptions(batches=(sample.courses[1].batch_ids[0],), users_file=str(users_file)),
    ):
        load(one, sample)
        load(many, sample)
        by_one = run_backfill(spark, one, options)
        by_many = run_backfill(spark, many, options)
        assert (by_one["slices"], by_many["slices"]) == (1, SLICES), options
        assert by_many["summary"] == by_one["summary"], options
        assert by_many["summary"]["scanned"] > 0, options
        assert read_tables(many) == read_tables(one), options
        assert events_of(many) == events_of(one), options
        per_slice = finished_slices(many, by_many["runId"])
        assert sorted(per_slice) == list(range(SLICES)), options
        if options == BackfillOptions():  # every slice holds some of the users' enrolments
            assert all(c["backfill.enrolments-scanned-count"] > 0 for c in per_slice.values())
            assert by_many["summary"]["newlyCompleted"] > 0
            # compared with the aggregates it staged (deleted when the run finished: below)
            assert "stage-aggregates" in by_many["phases"]
        else:  # a narrowed scope compares by key
            assert "stage-aggregates" not in by_many["phases"], options
        assert staged_runs(many) == [], options  # a finished run's copies are deleted


def staged_runs(cfg: JobConfig) -> list[str]:
    """The runs whose staged users and aggregates are on disk (scope/run folders)."""
    root = Path(cfg.locations.backfill_staging)
    return sorted(f"{s.name}/{r.name}" for s in root.glob("*") for r in s.glob("*"))


def timeless(line: str) -> str:
    """A report line without the times of the run (completedon; an event's ets, syncts)."""
    if not line.startswith("{"):
        return line.rsplit(",", 1)[0]
    event = json.loads(line)
    return json.dumps({k: v for k, v in event.items() if k not in ("ets", "syncts")})


def test_a_sliced_dry_run_writes_one_report_for_the_whole_run(spark, sample, tmp_path):
    one, many = _config(tmp_path / "one", STREAM_KEYSPACE, "backfill.slices=1"), sliced(tmp_path)
    load(one, sample)
    load(many, sample)
    reports = {name: tmp_path / name for name in ("one", "many")}
    summaries = {
        name: run_backfill(spark, cfg, BackfillOptions(dry_run=str(reports[name])))
        for name, cfg in (("one", one), ("many", many))
    }
    assert summaries["many"]["summary"] == summaries["one"]["summary"]
    for name in ("changes.csv", "audit-events.jsonl", "certificate-events.jsonl"):
        lines = {n: (reports[n] / name).read_text().splitlines() for n in reports}
        assert sorted(map(timeless, lines["many"])) == sorted(map(timeless, lines["one"])), name
        if name.endswith(".csv"):
            assert lines["many"][0] == lines["one"][0] == ",".join(CHANGE_COLUMNS)
    assert len((reports["many"] / "changes.csv").read_text().splitlines()) > 1
    written = json.loads((reports["many"] / "summary.json").read_text())
    assert written["slices"] == SLICES and written["summary"] == summaries["one"]["summary"]
    per_course = {r["courseid"]: r for r in written["perCourse"]}
    expected = {
        r["courseid"]: r
        for r in json.loads((reports["one"] / "summary.json").read_text())["perCourse"]
    }
    assert per_course == expected
    assert not (reports["many"] / ".parts").exists()
    assert read_tables(many) == read_tables(one)  # neither dry run wrote


def logged(caplog, event: str) -> list[dict]:
    """The backfill's JSON log lines of one ``event``."""
    lines = []
    for record in caplog.records:
        text = record.getMessage()
        if record.name == backfill.log.name and f'"event": "{event}"' in text:
            lines.append(json.loads(text))
    return lines


def test_a_killed_run_resumes_where_it_stopped_and_loses_no_event(
    spark, sample, tmp_path, kill_at, caplog
):
    caplog.set_level(logging.INFO, logger=backfill.log.name)
    reference = _config(tmp_path / "ref", STREAM_KEYSPACE, f"backfill.slices={SLICES}")
    load(reference, sample)
    uninterrupted = run_backfill(spark, reference, BackfillOptions())
    cfg = sliced(tmp_path)
    load(cfg, sample)

    # 1: killed between the writes of the first slice with completions and its publish
    kill_at(AFTER_ENROLMENT_WRITE)
    with pytest.raises(KilledAtFaultPoint):
        run_backfill(spark, cfg, BackfillOptions())
    assert events_of(cfg) == {}
    # 2: publishes what the first staged, redoes that slice, killed once it is recorded
    caplog.clear()
    kill_at(AFTER_SLICE_RECORDED)
    with pytest.raises(KilledAtFaultPoint):
        run_backfill(spark, cfg, BackfillOptions())
    assert logged(caplog, "outbox-recovered")
    [run] = logged(caplog, "backfill-run")
    assert run["resumed"] is True and run["slicesDone"] < SLICES - 1
    done = run["slicesDone"] + 1
    assert len(finished_slices(cfg, run["runId"])) == done
    [staged] = staged_runs(cfg)  # the stopped run's staged aggregates are kept for its resume
    assert staged.endswith(run["runId"]) and logged(caplog, "staged-aggregates")
    # 3: resumes at the next slice (with the run's staged users and aggregates) and finishes
    caplog.clear()
    summary = run_backfill(spark, cfg, BackfillOptions())
    assert [line["reused"] for line in logged(caplog, "staged-aggregates")] == [True]
    [users] = logged(caplog, "slice-users")
    assert users["reused"] is True and users["users"] == len(
        {e.userid for e in sample.enrolments()}
    )
    assert staged_runs(cfg) == []
    assert summary["resumedFrom"] == {"runId": run["runId"], "slicesDone": done}
    assert summary["slicesRun"] == SLICES - done and summary["runId"] == run["runId"]
    assert len(logged(caplog, "slice")) == SLICES - done

    assert read_tables(cfg) == read_tables(reference)
    events = events_of(cfg)
    assert events == events_of(reference)
    completed = uninterrupted["summary"]["newlyCompleted"]
    assert completed > 0 and len(events) == 2 * completed
    for topic in (cfg.kafka.certissue_topic, cfg.kafka.audit_topic):
        # every event delivered at least once; a duplicate carries the same mid
        mids = {m["mid"] for m in messages_on(cfg, topic)}
        assert len(mids) == completed and mids <= set(events), topic

    # a run of the same scope now starts anew (the last one finished), and changes nothing
    again = run_backfill(spark, cfg, BackfillOptions())
    assert again["resumedFrom"] is None and again["slicesRun"] == SLICES
    assert again["summary"]["changed"] == 0 and again["summary"]["newlyCompleted"] == 0


def test_restart_starts_over_instead_of_resuming(spark, sample, tmp_path, kill_at, caplog):
    caplog.set_level(logging.INFO, logger=backfill.log.name)
    cfg = sliced(tmp_path)
    load(cfg, sample)
    kill_at(AFTER_SLICE_RECORDED)
    with pytest.raises(KilledAtFaultPoint):
        run_backfill(spark, cfg, BackfillOptions())
    [run] = logged(caplog, "backfill-run")
    restarted = run_backfill(spark, cfg, BackfillOptions(restart=True))
    assert restarted["resumedFrom"] is None and restarted["runId"] != run["runId"]
    assert restarted["slicesRun"] == SLICES


def test_a_failed_slice_is_retried_and_the_run_completes(spark, sample, tmp_path, monkeypatch):
    cfg = sliced(tmp_path, slices=2).with_overrides("backfill.slice.retry.backoff.seconds=0.1")
    reference = _config(tmp_path / "ref", STREAM_KEYSPACE, "backfill.slices=2")
    load(cfg, sample)
    load(reference, sample)
    real = backfill_run.reconcile_batch
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second slice's first attempt
            raise ConnectionError("Cassandra went away (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(backfill_run, "reconcile_batch", flaky)
    summary = run_backfill(spark, cfg, BackfillOptions())
    monkeypatch.undo()
    assert summary["retries"] == 1 and len(calls) == 3
    run_backfill(spark, reference, BackfillOptions())
    assert read_tables(cfg) == read_tables(reference)

    def broken(*args, **kwargs):
        raise ConnectionError("Cassandra is gone (injected)")

    load(cfg, sample)
    monkeypatch.setattr(backfill_run, "reconcile_batch", broken)
    with pytest.raises(backfill.SliceFailedError, match="slice 0 failed 4 times"):
        run_backfill(spark, cfg, BackfillOptions(restart=True))


def test_a_defect_in_a_slice_is_not_retried(spark, sample, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger=backfill.log.name)
    cfg = sliced(tmp_path, slices=2)
    load(cfg, sample)
    calls = []

    def buggy(*args, **kwargs):
        calls.append(1)
        raise ZeroDivisionError("a bug in the batch (injected)")

    monkeypatch.setattr(backfill_run, "reconcile_batch", buggy)
    with pytest.raises(ZeroDivisionError, match="injected"):
        run_backfill(spark, cfg, BackfillOptions(restart=True))
    assert len(calls) == 1 and logged(caplog, "slice-retry") == []


def test_another_runs_unapplied_slice_is_settled_by_the_table(spark, sample, tmp_path):
    cfg = sliced(tmp_path)
    load(cfg, sample)
    enrolments = list(sample.enrolments())
    done = enrolments[0]
    pending = next(e for e in enrolments if e.userid != done.userid)
    cluster, session = connect(cfg.cassandra, keyspace=cfg.cassandra.keyspace)
    try:  # the crashed run had written status 2 for one enrolment, not yet for the other
        for enrolment, status in ((done, 2), (pending, 1)):
            session.execute(
                "UPDATE user_enrolments SET status = %s"
                " WHERE userid = %s AND courseid = %s AND batchid = %s",
                (status, enrolment.userid, enrolment.courseid, enrolment.batchid),
            )
    finally:
        cluster.shutdown()
    topic = cfg.kafka.certissue_topic
    rows = [
        ("certificate", f"settled-{e.userid}", e.userid, e.courseid, e.batchid,
         json.dumps({"mid": f"settled-{e.userid}", "topic": topic}))
        for e in (done, pending)
    ]  # fmt: skip
    outbox = Outbox(spark, cfg.locations.backfill_outbox)
    crashed = "backfill-20261201T013000-abcdef-00002-of-00004"  # a run that will not resume
    outbox.stage_rows(crashed, rows)
    assert outbox.unapplied_batches() == [crashed]

    run_backfill(spark, cfg, BackfillOptions(restart=True))
    mids = [m["mid"] for m in messages_on(cfg, topic)]
    assert f"settled-{done.userid}" in mids  # its status 2 is visible: its request goes out
    assert f"settled-{pending.userid}" not in mids  # not complete: no request before status 2
    assert outbox.unapplied_batches() == [] and outbox.applied_batches() == []
