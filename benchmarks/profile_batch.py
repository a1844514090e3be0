"""Where a warm batch's time goes: ``./dev.sh profile [small|medium] [--runs N]``.

Loads the benchmark sample of the preset, runs the batch function (read, reconcile, write,
publish) on the same requests ``--runs`` times in one Spark session, the enrolment rows restored
before each run so every run does the same writes, then once more under ``cProfile``. Prints
each run's seconds split into Spark job time and driver-only time, and what the profiled run's
driver spent: py4j round trips to the JVM, the time blocked on them, and the project's functions
by cumulative time. Writes ``<out>/profile-<preset>.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import time
from pathlib import Path
from typing import Any

from benchmarks.batch import BatchRunner
from benchmarks.common import (
    PRESETS,
    bench_config,
    bench_session,
    make_sample,
    pick_requests,
    restore_enrolments,
    sample_enrolments,
)
from devkit.paths import BENCHMARK_FIGURES
from devkit.sample.loader import load_sample_with_spark
from enrolment_reconciliation.modes.stream import tune_for_micro_batches

PY4J_SEND = ("clientserver.py", "send_command")  # every call from Python into the JVM
PROJECT = ("enrolment_reconciliation", "pyspark/sql/dataframe.py")


def driver_profile(profiler: cProfile.Profile, top: int = 25) -> dict[str, Any]:
    """py4j round trips and their seconds; the project's and DataFrame's functions by
    cumulative seconds."""
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    py4j_calls, py4j_seconds = 0, 0.0
    functions = []
    for (path, line, name), (_, calls, _, cumulative, _) in stats.items():
        if path.endswith(PY4J_SEND[0]) and name == PY4J_SEND[1]:
            py4j_calls, py4j_seconds = calls, cumulative
        if any(part in path for part in PROJECT):
            short = path.split("site-packages/")[-1].split("lib/")[-1]
            functions.append(
                {
                    "function": f"{short}:{line}({name})",
                    "calls": calls,
                    "seconds": round(cumulative, 3),
                }
            )
    functions.sort(key=lambda f: -f["seconds"])
    return {
        "py4jCalls": py4j_calls,
        "py4jSeconds": round(py4j_seconds, 3),
        "functions": functions[:top],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--runs", type=int, default=4, help="runs before the profiled one")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--out", default=str(BENCHMARK_FIGURES))
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    cfg, _, _ = bench_config()
    spark = bench_session(cfg, args.driver_memory)
    sample = make_sample(preset, args.seed)
    data = load_sample_with_spark(spark, sample, cfg, truncate=True)
    keys = pick_requests(sample, preset.requests, random.Random(args.seed))["batch"]
    tune_for_micro_batches(spark)
    run = BatchRunner(spark, cfg, keys)
    runs, rows = [], sample_enrolments(sample, keys)
    profiler = cProfile.Profile()
    for attempt in range(args.runs + 1):
        restore_enrolments(cfg, rows)
        runs.append(run(profiler if attempt == args.runs else None))
        r = runs[-1]
        print(
            f"run {attempt + 1}{' (profiled)' if attempt == args.runs else ''}: {r['seconds']} s,"
            f" {r['sparkJobs']} Spark jobs {r['sparkJobSeconds']} s,"
            f" driver only {r['driverOnlySeconds']} s; phases {r['phases']}",
            flush=True,
        )
    spark.stop()
    profile = driver_profile(profiler)
    print(
        f"\nprofiled run: {profile['py4jCalls']} py4j calls, {profile['py4jSeconds']} s blocked"
        f" on the JVM of {runs[-1]['seconds']} s\n"
    )
    for f in profile["functions"]:
        print(f"{f['seconds']:8.3f} s {f['calls']:5d}x  {f['function']}")
    figures = {
        "preset": args.preset,
        "data": data,
        "requests": len(keys),
        "machine": {"cpus": os.cpu_count()},
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "runs": runs,
        "profile": profile,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"profile-{args.preset}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwritten into {out / f'profile-{args.preset}.json'}")


if __name__ == "__main__":
    main()
