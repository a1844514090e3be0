"""Crash anywhere: the stream over a known set of requests, SIGKILLed at seeded random moments and
restarted each time, ends with exactly the tables of an uninterrupted run, every certificate and
AUDIT event delivered at least once, and duplicates identical (same mid, same content).

The short run (3 kills) is part of the suite; the campaign (20 kills) runs on demand:
``./dev.sh test -m faults`` (see docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from devkit.sample.data import SampleData, generate_sample
from devkit.sample.loader import load_sample
from devkit.stack import StreamProcess, stack_overrides
from enrolment_reconciliation.modes.stream import run_stream
from enrolment_reconciliation.runtime.config import JobConfig, load_config
from tests.helpers import as_cli_args, event_copies, produce, read_tables, sync_request

REDIS_DB = 13
BATCH = 12  # requests per micro-batch: many batches, so the kills land in all their phases
COLD_START_SECONDS = 12.0  # a stream process's start-up before its first micro-batch


def _config(keyspace: str, tmp: Path) -> tuple[JobConfig, list[str]]:
    env = f"crash{uuid.uuid4().hex[:8]}"
    overrides = [
        *stack_overrides(keyspace),
        f"redis.database.relationCache.id={REDIS_DB}",
        f"stream.checkpoint.location={tmp}/checkpoint",
        "service.search.basePath=http://127.0.0.1:9/search",
    ]
    args = ["--env", env, *as_cli_args(overrides), "--max-offsets-per-trigger", str(BATCH)]
    return load_config(env=env, overrides=overrides), args


def _requests(sample: SampleData) -> list[bytes]:
    keys = [(e.userid, e.courseid, e.batchid) for e in sample.enrolments()]
    return [sync_request(*k).encode() for k in keys]


def _run_with_kills(
    args: list[str], kills: int, seed: int, log: Path, window: float
) -> dict[str, object]:
    """Restart the available-now stream until it finishes cleanly, killing it ``kills`` times,
    each time at a moment between 3 s and ``window`` after its start."""
    rng = random.Random(seed)
    moments, restarts = [], 0
    while True:
        restarts += 1
        stream = StreamProcess(args, log, trigger="available-now")
        try:
            if len(moments) < kills:
                moment = rng.uniform(3.0, window)
                try:
                    stream.proc.wait(timeout=moment)
                except subprocess.TimeoutExpired:
                    os.killpg(stream.proc.pid, signal.SIGKILL)
                    stream.proc.wait()
                    moments.append(round(moment, 1))
                    continue
            else:
                stream.proc.wait(timeout=900)
        finally:
            stream.stop()
        assert stream.proc.returncode == 0, stream.tail(4000)
        if len(moments) >= kills:
            return {"kills": moments, "restarts": restarts}


def _campaign(spark, tmp_path: Path, *, kills: int, users: int, seed: int) -> dict[str, object]:
    sample = generate_sample(seed=seed, courses=3, users=users, batches_per_course=2)
    reference, _ = _config("er_test_faults_ref", tmp_path / "reference")
    crashed, crash_args = _config("er_test_faults", tmp_path / "crashed")
    requests = _requests(sample)
    load_sample(sample, reference, truncate=True)
    produce(reference, requests)
    # the uninterrupted run, in this process (the same job; only the crashed one is killed)
    ref_started = time.monotonic()
    run_stream(
        spark,
        reference.with_overrides(
            "stream.trigger.mode=available-now", f"stream.max.offsets.per.trigger={BATCH}"
        ),
    )
    # kills within a cold uninterrupted run's length: later ones would land in idle start-ups
    window = max(8.0, COLD_START_SECONDS + time.monotonic() - ref_started)
    expected_tables, expected_events = read_tables(reference), event_copies(reference)

    load_sample(sample, crashed, truncate=True)
    produce(crashed, requests)
    started = time.monotonic()
    figures = _run_with_kills(crash_args, kills, seed, tmp_path / "crashed.log", window)
    figures["killWindowSeconds"] = round(window, 1)
    figures["seconds"] = round(time.monotonic() - started, 1)

    assert read_tables(crashed) == expected_tables
    delivered = event_copies(crashed)
    assert set(delivered) == set(expected_events)  # every event at least once, none invented
    for mid, copies in delivered.items():
        assert all(c == expected_events[mid][0] for c in copies), mid  # duplicates identical
    figures.update(
        requests=len(requests),
        events=len(expected_events),
        duplicates=sum(len(c) - 1 for c in delivered.values()),
    )
    print("crash-anywhere:", json.dumps(figures))
    return figures


@pytest.mark.integration
def test_killed_three_times_the_stream_ends_as_an_uninterrupted_run(spark, tmp_path):
    figures = _campaign(spark, tmp_path, kills=3, users=12, seed=5)
    assert len(figures["kills"]) == 3


@pytest.mark.integration
@pytest.mark.faults
def test_crash_campaign_twenty_kills(spark, tmp_path):
    figures = _campaign(spark, tmp_path, kills=20, users=60, seed=17)
    assert len(figures["kills"]) == 20
