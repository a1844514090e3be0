"""What a full run of ``benchmarks.run`` reports from its figures: the chart
(``<preset>.png``) and the table of headline figures it prints, one line each.

Both read nothing but the figures (the dict written as ``<preset>.json``), so they draw a
published run's as well as a fresh one's (``--stream-only`` and ``--backfill-only`` do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import pyplot


def chart(figures: dict[str, Any], target: Path) -> None:
    """``<preset>.png``: the stream's latency, micro-batches and rate steps, the batch function
    by size and the backfill against the baseline, and the speedups against their targets."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(17, 8))
    lat = figures["stream"]["latency"]["all"]
    axes[0][0].hist(lat, bins=20, color="#4c72b0")
    axes[0][0].set_title(
        f"stream: request -> row rewritten (p50 {figures['stream']['latency']['p50']} s)"
    )
    axes[0][0].set_xlabel("seconds")
    mb = figures["stream"]["microBatches"]
    axes[0][1].plot(mb["seconds"], marker="o", label="seconds")
    axes[0][1].plot(mb["sparkJobs"], marker="s", label="Spark jobs")
    axes[0][1].set_title("stream: warm micro-batches")
    axes[0][1].set_xlabel("micro-batch")
    axes[0][1].legend()
    steps = figures["stream"]["throughput"]["steps"]
    axes[1][0].bar(
        [str(s["rate"]) for s in steps],
        [s["drainSeconds"] for s in steps],
        color=["#55a868" if s["keepsUp"] else "#c44e52" for s in steps],
    )
    axes[1][0].set_title("stream: backlog drain after each rate step (green: keeps up)")
    axes[1][0].set_ylabel("seconds to apply the last request")
    axes[1][0].set_xlabel("requests per second")
    b = figures["backfill"]
    names = ["baseline (per request)", "backfill", "floor (scan + write)"]
    baseline_seconds = b["enrolmentsScanned"] / max(figures["baseline"]["requestsPerSecond"], 1e-9)
    values = [baseline_seconds, b["seconds"], b["floor"]["seconds"]]
    axes[1][1].barh(names, values, color=["#c0c0c0", "#4c72b0", "#55a868"])
    axes[1][1].set_title(f"backfill of {b['enrolmentsScanned']} enrolments (seconds)")
    sizes = sorted(figures["batchSizes"].values(), key=lambda r: r["requests"])
    names = [str(r["requests"]) for r in sizes]
    per_request = 1 / max(figures["baseline"]["requestsPerSecond"], 1e-9)
    x = range(len(sizes))
    axes[0][2].bar(
        [i - 0.2 for i in x],
        [r["requests"] * per_request for r in sizes],
        width=0.4,
        color="#c0c0c0",
        label="baseline (per request)",
    )
    axes[0][2].bar(
        [i + 0.2 for i in x],
        [r["warmSeconds"] for r in sizes],
        width=0.4,
        color="#4c72b0",
        label="batch function, warm",
    )
    axes[0][2].set_xticks(list(x), names)
    axes[0][2].set_xlabel("requests in the batch")
    axes[0][2].set_ylabel("seconds")
    axes[0][2].set_title("batch function by size (read, reconcile, write, publish)")
    axes[0][2].legend()
    ratios = figures["ratios"]
    labels = ["batch", "stream rate", "backfill"]
    values = [
        ratios["batchVsBaseline"],
        ratios.get("streamVsBaseline", 0),
        ratios["backfillVsBaseline"],
    ]
    axes[1][2].bar(labels, values, color="#4c72b0")
    for goal, label in ((10, "stream/batch target 10x"), (20, "backfill target 20x")):
        axes[1][2].axhline(goal, color="#c44e52", linestyle="--", linewidth=1)
        axes[1][2].text(-0.4, goal, label, va="bottom", fontsize=8, color="#c44e52")
    axes[1][2].set_title("speedup over the per-request baseline (same run)")
    fig.suptitle(f"enrolment-reconciliation benchmarks, preset {figures['preset']}")
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)


def _stream_rows(f: dict[str, Any]) -> list[tuple[str, str]]:
    if "stream" not in f:
        return [("stream", "not run (--no-stream)")]
    s, r = f["stream"], f["ratios"]
    lat, mb = s["latency"], s["microBatches"]
    done, undone = s["microBatchesWithCompletions"], s["microBatchesWithoutCompletions"]
    rows = [
        ("request mix", ", ".join(f"{k} {v}" for k, v in s["mix"].items())),
        ("Spark jobs per micro-batch", f"{sorted(set(mb['sparkJobs']))}"),
        ("latency p50/p95/max", f"{lat['p50']} / {lat['p95']} / {lat['max']} s, trigger 1 s"),
        ("micro-batch median", f"{mb['medianSeconds']} s"),
        (
            "  with / without completions",
            f"{done['medianSeconds']} s ({done['medianSparkJobs']} jobs) / "
            f"{undone['medianSeconds']} s ({undone['medianSparkJobs']} jobs)",
        ),
        ("stream sustained", f"{s['throughput']['sustainedRate']} req/s, {r['streamVsBaseline']}x"),
        ("warm-up: first request", f"{s['warmUp']['firstRequestSeconds']} s"),
    ]
    only = f.get("streamInProgressOnly")
    if only:
        o = only["latency"]
        rows += [
            ("in-progress only: p50/p95", f"{o['p50']} / {o['p95']} s"),
            (
                "in-progress only: batch, rate",
                f"{only['microBatches']['medianSeconds']} s, "
                f"{only['throughput']['sustainedRate']} req/s",
            ),
        ]
    return rows


def _cold_rows(c: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The backfill as an operator runs it (``benchmarks.backfill_cold``)."""
    if not c:
        return []
    run, resume, mem = c["run"], c["resume"], c["run"]["memory"]
    return [
        (
            "cold backfill (1 GiB)",
            f"{run['seconds']} s, {run['slices']} slices, {run['consumptionRowsPerSecond']} rows/s,"
            f" fixed cost {run['coldFixedSeconds']} s",
        ),
        ("cold re-run, unchanged", f"{c['rerun']['seconds']} s"),
        (
            "cold efficiency",
            f"{c['efficiency']} (floor {c['floor']['seconds']} s / {run['seconds']} s)",
        ),
        (
            "cold memory",
            f"peak RSS JVM {mem['driverJvmMb']} MB, live heap {mem['driverLiveHeapMb']} MB",
        ),
        (
            "resume after kill at half",
            f"{resume['resumedSeconds']} s = {resume['resumedVsUninterrupted']} of a run"
            f" ({resume['slicesDoneWhenKilled']} slices done), tables equal"
            f" {resume['tablesEqual']}, events {resume['eventsDelivered']}",
        ),
    ]


def table(f: dict[str, Any]) -> str:
    """The headline figures, one line each."""
    b, bl, bf, r = f["batch"], f["baseline"], f["backfill"], f["ratios"]
    warm = b["warm"]
    peaks = {k: v for k, v in f["memory"]["backfill"].items() if k != "driverLiveHeapMb"}
    memory = " / ".join(f"{v} MB" for v in peaks.values())
    live = {k: m.get("driverLiveHeapMb") for k, m in f["memory"].items()}
    rows = [
        ("data", f"{f['data']['enrolments']} enrolments, {f['data']['consumption']} rows"),
        ("baseline (per request)", f"{bl['requests']} in {bl['seconds']} s"),
        (
            "batch function, warm",
            f"{b['requests']} in {warm['seconds']} s, {r['batchVsBaseline']}x",
        ),
        ("Spark jobs per batch", f"{warm['sparkJobs']}"),
        (
            "batch by size (warm)",
            ", ".join(
                f"{size}: {row['warmSeconds']} s"
                for size, row in sorted(f["batchSizes"].items(), key=lambda kv: int(kv[0]))
            ),
        ),
        *_stream_rows(f),
        ("backfill", f"{bf['enrolmentsPerSecond']} enrolments/s, {r['backfillVsBaseline']}x"),
        ("backfill rows/s", f"{bf['consumptionRowsPerSecond']} consumption rows/s"),
        (
            "efficiency floor/job",
            f"{bf['efficiency']} ({bf['floor']['seconds']} / {bf['seconds']} s)",
        ),
        ("re-run, unchanged", f"{bf['rerunSeconds']} s, {bf['rerunRowsWritten']} rows written"),
        ("peak RSS JVM/Py/workers", memory),
        ("driver live heap", " / ".join(f"{k} {v} MB" for k, v in live.items())),
        *_cold_rows(f.get("backfillCold")),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
