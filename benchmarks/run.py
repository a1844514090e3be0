"""Every instrument of docs/benchmarks.md in one run: ``./dev.sh bench [small|medium|large]``.

On the local stack, in one run (so the figures are ratios on one machine at one moment):

1. data at scale: a generated sample with realistic courses, loaded by the executors;
2. the baseline: the original job's access pattern, one request at a time, with the writes;
3. the batch function on the same requests (read, reconcile, write, publish), warm;
4. the stream (``spark-submit.sh stream --trigger processing-time=1s``): end-to-end latency of
   waves of requests (produced -> enrolment row rewritten), seconds and Spark jobs per
   micro-batch, then the highest request rate at which the consumer lag does not grow;
5. the backfill over every enrolment, then again over unchanged data, and the floor: a bare
   connector scan of the same tables plus a bare write of as many rows;
6. peak memory of the driver (JVM and Python) and the Python workers, per instrument.

Prints a table and writes ``<out>/<preset>.json`` and ``<out>/<preset>.png``.

This module only orders the instruments and writes what they found; each lives in a module of
its own (``baseline``, ``batch``, ``stream``, ``backfill``, ``backfill_cold``), what they share
in ``benchmarks.common``, the chart and the table in ``benchmarks.report``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil
from pyspark.sql import SparkSession

from benchmarks.backfill import measure_backfill, tune_for_backfill
from benchmarks.backfill_cold import chart as cold_chart
from benchmarks.backfill_cold import measure_backfill_cold
from benchmarks.baseline import measure_baseline
from benchmarks.batch import measure_batch_by_size
from benchmarks.common import (
    PRESETS,
    PeakMemory,
    Preset,
    bench_config,
    bench_session,
    make_sample,
    pick_requests,
    timed,
)
from benchmarks.report import chart, table
from benchmarks.stream import measure_streams
from devkit.paths import BENCHMARK_FIGURES
from devkit.sample.data import SampleData
from devkit.sample.loader import load_sample_with_spark
from enrolment_reconciliation.runtime.config import JobConfig


def main() -> None:
    args = _arguments()
    if args.backfill_only:
        remeasure_backfill(args)
    elif args.stream_only:
        remeasure_stream(args)
    else:
        measure_everything(args)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--out", default=str(BENCHMARK_FIGURES))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--driver-memory", default="4g", help="the local driver's heap")
    parser.add_argument(
        "--no-stream", action="store_true", help="skip the stream instruments (latency, rate)"
    )
    parser.add_argument(
        "--stream-only",
        action="store_true",
        help="re-measure only the stream instruments (in-progress learners and the realistic "
        "mix) and update them in the preset's published JSON",
    )
    parser.add_argument(
        "--backfill-only",
        action="store_true",
        help="re-measure only the backfill instruments (in-process and cold) and update them in "
        "the preset's published JSON; the other figures stay as their last full run made them",
    )
    return parser.parse_args()


def measure_everything(args: argparse.Namespace) -> None:
    """A full run: load the preset's sample, then the baseline, the batch function and the
    backfill in one Spark session, then the stream in processes of its own."""
    preset = PRESETS[args.preset]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg, overrides, workdir = bench_config()
    rng = random.Random(args.seed)
    figures = _new_figures(args.preset, preset)
    spark = bench_session(cfg, args.driver_memory)
    sample = make_sample(preset, args.seed)
    with timed(figures, "loadSeconds"):
        figures["data"] = load_sample_with_spark(spark, sample, cfg, truncate=True)
    keys = pick_requests(sample, preset.requests, rng)
    print(f"loaded {figures['data']} in {figures['loadSeconds']} s", flush=True)

    figures["baseline"] = measure_baseline(cfg, keys["batch"])
    print(f"baseline: {figures['baseline']}", flush=True)
    _batch_figures(spark, cfg, sample, preset, keys, figures)
    _backfill_figures(spark, cfg, overrides, sample, workdir, figures)
    spark.stop()
    if not args.no_stream:
        _stream_figures(cfg, overrides, preset, keys, workdir, figures, rng)

    streamed = "stream" in figures
    ratios = ["batchVsBaseline", "backfillVsBaseline"] + (["streamVsBaseline"] if streamed else [])
    figures["ratios"] = speedups(figures, *ratios)
    _write_json(figures, out, args.preset)
    if streamed:  # the chart's panels are mostly the stream's
        chart(figures, out / f"{args.preset}.png")
    cold_chart(figures, out / f"{args.preset}-backfill.png")
    print("\n" + table(figures))
    print(f"\nwritten into {out}: {args.preset}.json" + (" and .png" if streamed else ""))


def remeasure_backfill(args: argparse.Namespace) -> None:
    """``--backfill-only``: load the preset's sample, measure the backfill, update its JSON."""
    out, figures = _published(args)
    cfg, overrides, workdir = bench_config()
    spark = bench_session(cfg, args.driver_memory)
    sample = make_sample(PRESETS[args.preset], args.seed)
    figures["data"] = load_sample_with_spark(spark, sample, cfg, truncate=True)
    figures["backfillMeasuredAt"] = _now()
    _backfill_figures(spark, cfg, overrides, sample, workdir, figures)
    spark.stop()
    figures["ratios"].update(speedups(figures, "backfillVsBaseline"))
    _write_json(figures, out, args.preset)
    cold_chart(figures, out / f"{args.preset}-backfill.png")
    print("\n" + table(figures))


def remeasure_stream(args: argparse.Namespace) -> None:
    """``--stream-only``: load the preset's sample, measure the stream, update its JSON."""
    out, figures = _published(args)
    preset = PRESETS[args.preset]
    cfg, overrides, workdir = bench_config()
    spark = bench_session(cfg, args.driver_memory)
    sample = make_sample(preset, args.seed)
    figures["data"] = load_sample_with_spark(spark, sample, cfg, truncate=True)
    spark.stop()
    rng = random.Random(args.seed)
    keys = pick_requests(sample, preset.requests, rng)
    figures["streamMeasuredAt"] = _now()
    _stream_figures(cfg, overrides, preset, keys, workdir, figures, rng)
    figures["ratios"].update(speedups(figures, "streamVsBaseline"))
    _write_json(figures, out, args.preset)
    chart(figures, out / f"{args.preset}.png")
    print("\n" + table(figures))


# --- the instruments, into the figures ---------------------------------------------------------
def _batch_figures(
    spark: SparkSession,
    cfg: JobConfig,
    sample: SampleData,
    preset: Preset,
    keys: dict[str, list],
    figures: dict[str, Any],
) -> None:
    """The batch function by size, with the session's peak memory while it runs."""
    with PeakMemory(os.getpid()) as memory:
        figures["batchSizes"], figures["batch"] = measure_batch_by_size(
            spark, cfg, sample, preset, keys
        )
    figures["memory"]["batch"] = memory.peaks
    print(f"batch: {figures['batch']['warm']}", flush=True)


def _backfill_figures(
    spark: SparkSession,
    cfg: JobConfig,
    overrides: list[str],
    sample: SampleData,
    workdir: Path,
    figures: dict[str, Any],
) -> None:
    """The in-process backfill (at the benchmark's settings) and the cold one, into ``figures``."""
    tune_for_backfill(spark)
    with PeakMemory(os.getpid()) as memory:
        figures["backfill"] = measure_backfill(spark, cfg, figures["data"]["consumption"])
    figures["memory"]["backfill"] = memory.peaks
    print(f"backfill: {figures['backfill']}", flush=True)
    # as an operator runs it: cold ./spark-submit.sh processes at Spark's defaults
    figures["backfillCold"] = measure_backfill_cold(spark, cfg, overrides, sample, workdir)


def _stream_figures(
    cfg: JobConfig,
    overrides: list[str],
    preset: Preset,
    keys: dict[str, list],
    workdir: Path,
    figures: dict[str, Any],
    rng: random.Random,
) -> None:
    """The stream on in-progress learners only, then on the realistic mix (the headline)."""
    figures.update(measure_streams(cfg, overrides, preset, keys, workdir, rng))
    figures["memory"]["stream"] = figures["stream"].pop("memory")


def speedups(figures: dict[str, Any], *names: str) -> dict[str, float]:
    """The figures' ``ratios`` named: each instrument against the per-request baseline of the
    same run (the batch function by seconds, the backfill and the stream by rate)."""
    baseline = figures["baseline"]
    ratio = {
        "batchVsBaseline": lambda: baseline["seconds"] / figures["batch"]["warm"]["seconds"],
        "backfillVsBaseline": lambda: (
            figures["backfill"]["enrolmentsPerSecond"] / baseline["requestsPerSecond"]
        ),
        "streamVsBaseline": lambda: (
            figures["stream"]["throughput"]["sustainedRate"] / baseline["requestsPerSecond"]
        ),
    }
    return {name: round(ratio[name](), 2) for name in names}


# --- the figures' file -------------------------------------------------------------------------
def _new_figures(name: str, preset: Preset) -> dict[str, Any]:
    return {
        "preset": name,
        "settings": asdict(preset),
        "machine": {
            "cpus": os.cpu_count(),
            "memoryGb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "startedAt": _now(),
        "memory": {},
    }


def _published(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The folder of the preset's published figures, and those figures (to update)."""
    out = Path(args.out)
    return out, json.loads((out / f"{args.preset}.json").read_text())


def _write_json(figures: dict[str, Any], out: Path, preset: str) -> None:
    (out / f"{preset}.json").write_text(json.dumps(figures, indent=2) + "\n")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


if __name__ == "__main__":
    main()
