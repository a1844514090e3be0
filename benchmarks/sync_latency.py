"""One learner synced: the direct ``sync`` (its cold start-up, taken apart) against
``sync --via-stream`` with a stream running at a 1 s trigger, both as a person runs them.

1. ``./spark-submit.sh sync`` cold, ``--runs`` times: wall time of the command;
2. the same work in one Python process, taken apart: the SparkSession (JVM, jars, Spark), the
   first ``run_sync`` (connector session, class loading, first plans) and warm ones after it;
3. ``./spark-submit.sh sync --via-stream`` (no Spark on the caller's side) ``--runs`` times, each
   for another enrolment, with ``stream --trigger processing-time=1s`` running: wall time of
   the command, request to printed answer.

The default sample is loaded into a keyspace of the benchmark's own. Writes
``docs/benchmarks/sync.json``.

    ./dev.sh bench-sync          # or: .venv/bin/python -m benchmarks.sync_latency
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import uuid
from pathlib import Path
from statistics import median
from typing import Any

from devkit.paths import BENCHMARK_FIGURES, PROJECT_ROOT, SPARK_SUBMIT, STACK_DIR
from devkit.sample.data import generate_sample
from devkit.sample.loader import load_sample
from devkit.stack import StreamProcess, stack_overrides

KEYSPACE, REDIS_DB = "er_bench_sync", 13


def _cli(mode_args: list[str], settings: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    done = subprocess.run(
        [str(SPARK_SUBMIT), *mode_args, *settings],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode_args[:2]} exited {done.returncode}: {done.stderr[-2000:]}")
    return round(time.monotonic() - started, 3), done


def _key_args(key: tuple[str, str, str]) -> list[str]:
    return ["--user", key[0], "--course", key[1], "--batch", key[2]]


def in_process(cfg, keys: list[tuple[str, str, str]]) -> dict[str, Any]:
    """The direct sync's parts in one process: session, first sync, warm syncs."""
    started = time.monotonic()
    from enrolment_reconciliation.modes.sync import run_sync
    from enrolment_reconciliation.runtime.session import build_spark_session

    imported = time.monotonic()
    spark = build_spark_session(cfg, master="local[*]", app_name="enrolment-reconciliation-sync")
    spark.sparkContext.setLogLevel("WARN")
    session = time.monotonic()
    try:
        seconds = []
        for key in keys:
            began = time.monotonic()
            run_sync(spark, cfg, *key)
            seconds.append(round(time.monotonic() - began, 3))
    finally:
        spark.stop()
    return {
        "importSeconds": round(imported - started, 3),
        "sparkSessionSeconds": round(session - imported, 3),
        "firstSyncSeconds": seconds[0],
        "warmSyncSeconds": seconds[1:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=str(BENCHMARK_FIGURES))
    args = parser.parse_args()
    env = f"benchsync{uuid.uuid4().hex[:6]}"
    workdir = STACK_DIR / "bench" / env
    overrides = [
        *stack_overrides(KEYSPACE),
        f"redis.database.relationCache.id={REDIS_DB}",
        f"stream.checkpoint.location={workdir}/checkpoint",
        "service.search.basePath=http://127.0.0.1:9/search",
    ]
    settings = ["--env", env, *(a for o in overrides for a in ("--set", o))]
    from enrolment_reconciliation.runtime.config import load_config

    cfg = load_config(env=env, overrides=overrides)
    sample = generate_sample(seed=7)
    load_sample(sample, cfg, truncate=True)
    consumed = {(r.userid, r.courseid, r.batchid) for r in sample.consumption()}
    keys = [
        k for k in ((e.userid, e.courseid, e.batchid) for e in sample.enrolments()) if k in consumed
    ]
    figures: dict[str, Any] = {"startedAt": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": args.runs}

    direct = [_cli(["sync", *_key_args(k)], settings)[0] for k in keys[: args.runs]]
    figures["direct"] = {"seconds": direct, "median": median(direct)}
    print(f"direct sync: {figures['direct']}", flush=True)
    figures["directInProcess"] = in_process(cfg, keys[args.runs : 2 * args.runs + 1])
    print(f"direct sync in one process: {figures['directInProcess']}", flush=True)

    workdir.mkdir(parents=True, exist_ok=True)
    stream = StreamProcess(settings, workdir / "stream.log")
    try:
        # a first request makes the stream's first (cold) micro-batch; then it is warm
        _cli(["sync", "--via-stream", "--timeout", "300", *_key_args(keys[-1])], settings)
        via = []
        for key in keys[2 * args.runs + 1 : 3 * args.runs + 1]:
            seconds, done = _cli(["sync", "--via-stream", *_key_args(key)], settings)
            via.append(seconds)
            json.loads(done.stdout)  # the answer was printed
    finally:
        stream.stop()
    figures["viaStream"] = {"seconds": via, "median": median(via), "max": max(via)}
    print(f"sync --via-stream: {figures['viaStream']}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sync.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
