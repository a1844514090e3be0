"""The benchmark instruments run end to end on the real stack (the ``smoke`` preset: every
instrument, as briefly as it runs): a smoke test of ``./dev.sh bench``; the figures themselves
are not asserted (speed is for the benchmarks), what they say about correctness is (a re-run
writes nothing, a SIGKILLed cold run resumes to the same tables and events)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from devkit.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration


def test_every_instrument_reports_its_figures(tmp_path):
    # as ./dev.sh bench starts it: without the jar folder the suite's conftest exported
    environ = {k: v for k, v in os.environ.items() if k != "ER_SPARK_JARS_DIR"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--preset", "smoke", "--out", str(tmp_path)],
        cwd=PROJECT_ROOT,
        env={**environ, "PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'lib'}"},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((tmp_path / "smoke.json").read_text())
    assert figures["baseline"]["requests"] == figures["batch"]["requests"] > 0
    assert figures["batch"]["warm"]["sparkJobs"] > 0
    assert figures["stream"]["latency"]["requests"] > 0
    assert figures["stream"]["throughput"]["steps"]
    assert figures["backfill"]["rerunRowsWritten"] == 0  # the second backfill writes nothing
    assert figures["backfill"]["floor"]["rowsWritten"] == figures["backfill"]["rowsWritten"]
    assert set(figures["memory"]) == {"batch", "backfill", "stream"}
    assert set(figures["ratios"]) == {"batchVsBaseline", "streamVsBaseline", "backfillVsBaseline"}
    assert (tmp_path / "smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cold = figures["backfillCold"]  # cold ./spark-submit.sh processes, as an operator runs them
    assert cold["run"]["rowsWritten"] > 0 and cold["rerun"]["rowsWritten"] == 0
    assert cold["resume"]["tablesEqual"] is True
    assert cold["resume"]["eventsDelivered"] == cold["resume"]["eventsOfUninterrupted"]
    assert (tmp_path / "smoke-backfill.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for cpu in (cold["run"]["cpuSeconds"], cold["floor"]["cpuSeconds"]):  # where the CPU went
        assert 0 < cpu["jvm"]["tasks"] < cpu["jvm"]["total"] and cpu["cassandra"] > 0
    assert "efficiency floor/job" in done.stdout
