"""Certificate repair on the real stack (``backfill --repair-certificates``): one request per
completed enrolment without a certificate in a batch with a template, none for the others;
the dry run lists them and publishes nothing; filters narrow it; a crash between the writes
and the publish loses none of them (outbox). The expected set is computed from the sample's
own rows, not from the job."""

from __future__ import annotations

import json
from collections import Counter as Tally
from pathlib import Path

import pytest

from devkit.sample.data import SampleData, generate_sample
from enrolment_reconciliation.batch.milestones import AFTER_ENROLMENT_WRITE
from enrolment_reconciliation.core.counters import Counter
from enrolment_reconciliation.modes.backfill import BackfillOptions, run_backfill
from enrolment_reconciliation.runtime.config import JobConfig
from enrolment_reconciliation.runtime.jvm import evict_connector_sessions
from tests.helpers import KilledAtFaultPoint, messages_on
from tests.integration.test_backfill import backfill_config
from tests.integration.test_backfill import load as _load

pytestmark = pytest.mark.integration
KEYSPACE = "er_test_repair"
Key = tuple[str, str, str]


@pytest.fixture(scope="module")
def sample() -> SampleData:
    return generate_sample(seed=31, courses=3, users=90, batches_per_course=2)


def eligible(sample: SampleData, course: str | None = None) -> set[Key]:
    """Completed, no certificate, in a batch with a template: from the sample's rows."""
    templated = {(c.course_id, b) for c in sample.courses for b in c.templated_batch_ids}
    return {
        (e.userid, e.courseid, e.batchid)
        for e in sample.enrolments()
        if e.status == 2
        and not e.issued_certificates
        and (e.courseid, e.batchid) in templated
        and course in (None, e.courseid)
    }


def load(spark, cfg: JobConfig, sample: SampleData) -> None:
    _load(cfg, sample)
    # the keyspace may be new to the suite's Spark session: its cached connector session would
    # learn of it only after its schema-refresh debounce
    evict_connector_sessions(spark)


def repair_config(tmp_path: Path, slices: int = 1) -> JobConfig:
    return backfill_config(tmp_path, KEYSPACE, f"backfill.slices={slices}")


def certificate_requests(cfg: JobConfig) -> list[dict]:
    return messages_on(cfg, cfg.kafka.certissue_topic)


def key_of(event: dict) -> Key:
    edata = event["edata"]
    return edata["userIds"][0], edata["courseId"], edata["batchId"]


def test_the_sample_holds_every_case_a_repair_must_tell_apart(sample):
    completed = [e for e in sample.enrolments() if e.status == 2]
    untemplated = {(c.course_id, b) for c in sample.courses for b in c.batch_ids[1::2]}
    assert eligible(sample)
    assert any(e.issued_certificates for e in completed)
    assert any((e.courseid, e.batchid) in untemplated for e in completed)


def test_a_repair_sends_one_request_per_eligible_enrolment_and_the_dry_run_lists_them(
    spark, sample, tmp_path
):
    cfg = repair_config(tmp_path)
    load(spark, cfg, sample)
    expected = eligible(sample)
    report = tmp_path / "report"
    dry = run_backfill(
        spark, cfg, BackfillOptions(dry_run=report.as_uri(), repair_certificates=True)
    )
    assert certificate_requests(cfg) == []
    listed = [json.loads(line) for line in (report / "certificate-repairs.jsonl").open()]
    assert sorted(key_of(e) for e in listed) == sorted(expected)
    assert dry["summary"]["certificateRepairs"] == len(expected)
    written = json.loads((report / "summary.json").read_text())
    assert written["summary"]["certificateRepairs"] == len(expected)

    summary = run_backfill(spark, cfg, BackfillOptions(repair_certificates=True))
    assert summary["counters"][Counter.CERT_REPAIRS] == len(expected)
    assert summary["summary"]["certificateRepairs"] == len(expected)
    completed_now = summary["summary"]["newlyCompleted"]
    requests = certificate_requests(cfg)
    per_key = Tally(key_of(e) for e in requests)
    repaired = {k for k in per_key if k in expected}
    assert repaired == expected and all(per_key[k] == 1 for k in expected)
    # the rest are the completions of this run, each with its AUDIT event; repairs have none
    assert len(requests) == len(expected) + completed_now
    audited = {
        (a["actor"]["id"], a["object"]["rollup"]["l1"], a["context"]["cdata"][0]["id"])
        for a in messages_on(cfg, cfg.kafka.audit_topic)
    }
    assert len(audited) == completed_now and not audited & expected
    assert set(per_key) - expected == audited
    # the same shape as a completion's request, reIssue false, the mids of this run's repair
    completion = next(e for e in requests if key_of(e) in audited)
    for event in requests:
        assert event.keys() == completion.keys()
        assert event["edata"]["reIssue"] is False
        assert event["edata"]["action"] == "issue-certificate"
    assert len({e["mid"] for e in requests}) == len(requests)

    # asked again for one course: its learners are sent a request again, with new mids, and so
    # are those the first run completed (no certificate generator filled their certificates)
    course = sample.courses[0].course_id
    again = run_backfill(spark, cfg, BackfillOptions(courses=(course,), repair_certificates=True))
    templated = {(course, b) for b in sample.courses[0].templated_batch_ids}
    wanted = eligible(sample, course) | {k for k in audited if k[1:] in templated}
    assert again["counters"][Counter.CERT_REPAIRS] == len(wanted) > len(eligible(sample, course))
    second = certificate_requests(cfg)[len(requests) :]
    assert sorted(key_of(e) for e in second) == sorted(wanted)
    assert not {e["mid"] for e in second} & {e["mid"] for e in requests}


def test_repairs_staged_before_a_crash_are_published_by_the_next_run(
    spark, sample, tmp_path, kill_at
):
    cfg = repair_config(tmp_path, slices=2)  # the crash hits the first slice
    load(spark, cfg, sample)

    kill_at(AFTER_ENROLMENT_WRITE)
    with pytest.raises(KilledAtFaultPoint):
        run_backfill(spark, cfg, BackfillOptions(repair_certificates=True))
    assert certificate_requests(cfg) == []  # staged and applied, not yet published

    # the next run of the scope publishes what the crashed one staged, then resumes it; the
    # learners the crashed attempt completed get their completion's request, not a repair
    run_backfill(spark, cfg, BackfillOptions(repair_certificates=True))
    per_key = Tally(key_of(e) for e in certificate_requests(cfg))
    assert set(per_key) >= eligible(sample)
    mids: dict[Key, set[str]] = {}
    for event in certificate_requests(cfg):
        mids.setdefault(key_of(event), set()).add(event["mid"])
    # a slice published twice (recovered, then redone on resume) repeats only the same mid
    assert all(len(m) == 1 for m in mids.values())
