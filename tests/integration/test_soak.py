"""Soak: the stream for 10 minutes at the steady rate the small benchmark sustains (120/s).
Driver memory must not grow, the backlog must not grow, and no micro-batch may fail.

Driver memory is measured three ways, so that a heap filling up to its limit is not mistaken for
a leak (the first soak saw RSS +22% and could not tell which): the live heap after a forced full
GC (a leak in the JVM's objects), the JVM's native memory outside the heap (Native Memory
Tracking: metaspace, threads, code, direct buffers), and the RSS of a driver whose heap is
committed and touched at start (-Xms = -Xmx, AlwaysPreTouch), so that RSS can only grow by leaks.

On demand: ``./dev.sh test -m soak`` (ER_SOAK_SECONDS, ER_SOAK_RATE to change the defaults);
the figures are printed and recorded in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from itertools import cycle
from statistics import median

import psutil
import pytest
from kafka import KafkaProducer

from devkit.sample.data import generate_sample
from devkit.sample.loader import load_sample
from devkit.stack import StreamProcess, stack_overrides
from enrolment_reconciliation.runtime.config import load_config
from tests.helpers import as_cli_args, sync_request

pytestmark = [pytest.mark.integration, pytest.mark.soak]

SECONDS = int(os.environ.get("ER_SOAK_SECONDS", "600"))
# Load before the measured soak: JIT, class loading and Spark's UI record of past jobs, stages
# and SQL plans (bounded by the stream's LONG_RUNNING_UI_LIMITS) fill up in the first minutes.
WARMUP = int(os.environ.get("ER_SOAK_WARMUP_SECONDS", "120"))
RATE = int(os.environ.get("ER_SOAK_RATE", "120"))  # requests/s: what `small` sustains
SAMPLE_EVERY = 30  # seconds; each sample forces one full GC of the driver


DRIVER_HEAP = "1g"
# The driver JVM's heap committed and touched at start: RSS then grows only with real leaks.
DRIVER_JAVA_OPTS = f"-Xms{DRIVER_HEAP} -XX:+AlwaysPreTouch -XX:NativeMemoryTracking=summary"


def _process(pid: int, name: str, argument: str = "") -> psutil.Process:
    """The process called `name` (with `argument` on its command line) in the tree of `pid`."""
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return next(
        p for p in tree if p.name().startswith(name) and any(argument in a for a in p.cmdline())
    )


def _jcmd(pid: int, *command: str) -> str:
    done = subprocess.run(["jcmd", str(pid), *command], capture_output=True, text=True, timeout=120)
    return done.stdout


def _live_classes(pid: int) -> dict[str, int]:
    """Bytes of live objects per class in the driver JVM (the histogram forces a full GC)."""
    out = _jcmd(_process(pid, "java").pid, "GC.class_histogram")
    rows = re.findall(r"^\s*\d+:\s+\d+\s+(\d+)\s+(\S+)", out, re.MULTILINE)
    return {name: int(size) for size, name in rows}


def _driver_memory(pid: int) -> dict[str, float]:
    """MB: RSS of the driver's JVM and Python, live heap after a full GC, native outside heap."""
    jvm = _process(pid, "java")
    python = _process(pid, "python", "enrolment_reconciliation_job.py")
    live = re.search(r"^Total\s+\d+\s+(\d+)", _jcmd(jvm.pid, "GC.class_histogram"), re.M)
    nmt = _jcmd(jvm.pid, "VM.native_memory", "summary", "scale=KB")
    total = re.search(r"Total: reserved=\d+KB, committed=(\d+)KB", nmt)
    heap_committed = re.search(r"Java Heap \(reserved=\d+KB, committed=(\d+)KB\)", nmt)
    assert live and total and heap_committed, f"unexpected jcmd output: {nmt[:2000]}"
    return {
        "jvmRss": jvm.memory_info().rss / 2**20,
        "pythonRss": python.memory_info().rss / 2**20,
        "liveHeap": int(live.group(1)) / 2**20,
        "nonHeap": (int(total.group(1)) - int(heap_committed.group(1))) / 1024,
    }


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
    stream = StreamProcess(
        ["--env", env, *as_cli_args(overrides)],
        tmp_path / "stream.log",
        environ={"SPARK_DRIVER_MEMORY": DRIVER_HEAP, "SPARK_SUBMIT_OPTS": DRIVER_JAVA_OPTS},
    )
    producer = KafkaProducer(bootstrap_servers=cfg.kafka.broker_servers, linger_ms=5)
    samples, sent = [], 0
    try:
        producer.send(cfg.kafka.input_topic, sync_request(*next(keys)).encode())
        sent = 1
        # start-up and the first (cold) micro-batch are not the soak
        stream.wait_for_batches(1, timeout=600)
        started = time.monotonic()
        while (elapsed := time.monotonic() - started - WARMUP) < SECONDS:
            due = int(RATE * (elapsed + WARMUP)) - (sent - 1)
            for _ in range(max(due, 0)):
                producer.send(cfg.kafka.input_topic, sync_request(*next(keys)).encode())
            sent += max(due, 0)
            producer.flush()
            if elapsed >= len(samples) * SAMPLE_EVERY:  # (elapsed < 0 while warming up)
                if not samples:
                    classes_at_start = _live_classes(stream.proc.pid)
                backlog = sent - stream.processed()
                samples.append({"backlog": backlog, **_driver_memory(stream.proc.pid)})
            assert stream.proc.poll() is None, stream.tail()
            time.sleep(0.5)
        classes_at_end = _live_classes(stream.proc.pid)
    finally:
        producer.close()
        stream.stop(timeout=120)
    done = stream.batches()
    third = max(len(samples) // 3, 1)

    def thirds(key: str) -> dict[str, float]:
        return {
            "firstThird": round(median(x[key] for x in samples[:third]), 1),
            "lastThird": round(median(x[key] for x in samples[-third:]), 1),
            "max": round(max(x[key] for x in samples), 1),
        }

    figures = {
        "seconds": SECONDS,
        "warmupSeconds": WARMUP,
        "rate": RATE,
        "requests": sent,
        "microBatches": len(done),
        "medianBatchSeconds": median(b["seconds"] for b in done),
        "samples": len(samples),
        "memoryMb": {k: thirds(k) for k in ("liveHeap", "nonHeap", "jvmRss", "pythonRss")},
        "backlog": thirds("backlog"),
        "failedMicroBatches": stream.failed_batches(),
    }
    grown = {
        name: round((size - classes_at_start.get(name, 0)) / 2**20, 1)
        for name, size in classes_at_end.items()
    }
    figures["liveHeapGrowthByClassMb"] = dict(sorted(grown.items(), key=lambda x: -x[1])[:12])
    print("soak:", json.dumps(figures))
    print("soak samples:", json.dumps([{k: round(v, 1) for k, v in x.items()} for x in samples]))
    assert figures["failedMicroBatches"] == 0
    # flat: the last third within 15% of the first (memory), one micro-batch's worth (backlog)
    for kind, seen in figures["memoryMb"].items():
        assert seen["lastThird"] <= 1.15 * seen["firstThird"], (kind, seen)
    one_batch = RATE * (figures["medianBatchSeconds"] + 1)
    assert figures["backlog"]["lastThird"] <= figures["backlog"]["firstThird"] + one_batch
