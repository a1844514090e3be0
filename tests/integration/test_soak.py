"""Soak: the stream for 10 minutes at a steady rate below the sustainable one of the benchmarks.
Driver memory must not grow, the backlog must not grow, and no micro-batch may fail.

On demand: ``./dev.sh test -m soak`` (ER_SOAK_SECONDS, ER_SOAK_RATE to change the defaults);
the figures are printed and recorded in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from itertools import cycle
from statistics import median

import psutil
import pytest
from kafka import KafkaProducer

from enrolment_reconciliation.config import load_config
from enrolment_reconciliation.sample.data import generate_sample
from enrolment_reconciliation.sample.loader import load_sample
from enrolment_reconciliation.sample.stack import PROJECT_ROOT, stack_overrides
from tests.helpers import as_cli_args, sync_request

pytestmark = [pytest.mark.integration, pytest.mark.soak]

SECONDS = int(os.environ.get("ER_SOAK_SECONDS", "600"))
RATE = int(os.environ.get("ER_SOAK_RATE", "20"))  # requests/s; the small benchmark sustains 60+


def _rss_mb(pid: int) -> float:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    jvm = [p for p in procs if p.name() == "java"]
    return sum(p.memory_info().rss for p in jvm) / 2**20


def test_ten_minutes_at_a_steady_rate(tmp_path):
    env = f"soak{uuid.uuid4().hex[:6]}"
    overrides = [
        *stack_overrides("er_test_faults"),
        "redis.database.relationCache.id=13",
        f"stream.checkpoint.location={tmp_path}/checkpoint",
        "service.search.basePath=http://127.0.0.1:9/search",
    ]
    cfg = load_config(env=env, overrides=overrides)
    sample = generate_sample(seed=23, courses=4, users=200, batches_per_course=2)
    load_sample(sample, cfg, truncate=True)
    keys = cycle([(e.userid, e.courseid, e.batchid) for e in sample.enrolments()])
    log = tmp_path / "stream.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(PROJECT_ROOT / "spark-submit.sh"),
                "stream",
                "--trigger",
                "processing-time=1s",
                "--env",
                env,
                *as_cli_args(overrides),
            ],
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    producer = KafkaProducer(bootstrap_servers=cfg.kafka_broker_servers, linger_ms=5)

    def batches() -> list[dict]:
        lines = log.read_text(errors="replace").splitlines()
        return [json.loads(x.split(": ", 1)[1]) for x in lines if '"event": "micro-batch"' in x]

    samples, sent = [], 0
    try:
        producer.send(cfg.input_topic, sync_request(*next(keys)).encode())
        sent = 1
        while not batches():  # start-up and the first (cold) micro-batch are not the soak
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < SECONDS:
            due = int(RATE * elapsed) - (sent - 1)
            for _ in range(max(due, 0)):
                producer.send(cfg.input_topic, sync_request(*next(keys)).encode())
            sent += max(due, 0)
            producer.flush()
            if int(elapsed) % 10 == 0:
                processed = sum(b["counters"]["requests.total-events-count"] for b in batches())
                samples.append((elapsed, _rss_mb(proc.pid), sent - processed))
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        producer.close()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
    done = batches()
    third = max(len(samples) // 3, 1)
    first, last = samples[:third], samples[-third:]
    figures = {
        "seconds": SECONDS,
        "rate": RATE,
        "requests": sent,
        "microBatches": len(done),
        "medianBatchSeconds": median(b["seconds"] for b in done),
        "driverJvmMb": {
            "firstThird": median(s[1] for s in first),
            "lastThird": median(s[1] for s in last),
            "max": max(s[1] for s in samples),
        },
        "backlog": {
            "firstThird": median(s[2] for s in first),
            "lastThird": median(s[2] for s in last),
            "max": max(s[2] for s in samples),
        },
        "failedMicroBatches": log.read_text(errors="replace").count('"event": "query-failed"'),
    }
    print("soak:", json.dumps(figures))
    assert figures["failedMicroBatches"] == 0
    # flat: the last third within 15% (memory) and one batch's worth (backlog) of the first
    assert figures["driverJvmMb"]["lastThird"] <= 1.15 * figures["driverJvmMb"]["firstThird"]
    one_batch = RATE * (figures["medianBatchSeconds"] + 1)
    assert figures["backlog"]["lastThird"] <= figures["backlog"]["firstThird"] + one_batch
