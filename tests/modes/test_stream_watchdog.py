"""The batch watchdog: a micro-batch stuck where a cancel cannot reach ends the process with
ExitCode.STUCK, for its supervisor to restart it from the checkpoint."""

from __future__ import annotations

import subprocess
import sys

from devkit.paths import PROJECT_ROOT
from enrolment_reconciliation.modes.stream import BatchWatchdog
from enrolment_reconciliation.runtime.exit_codes import ExitCode

STUCK = """
import time
from pyspark.sql import SparkSession
from enrolment_reconciliation.modes.stream import BatchWatchdog
spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
BatchWatchdog(spark, 1, grace=1).run("batch-7", lambda: time.sleep(120) or {})
print("returned")
"""


def test_a_batch_stuck_past_timeout_and_grace_exits_for_a_restart():
    done = subprocess.run(
        [sys.executable, "-c", STUCK],
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT / "lib")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == ExitCode.STUCK, done.stderr[-2000:]
    assert '"event": "batch-stuck"' in done.stderr and "returned" not in done.stdout


def test_a_batch_that_finishes_in_time_returns_its_counts(spark):
    assert BatchWatchdog(spark, 30, grace=1).run("batch-8", lambda: {"n": 1}) == {"n": 1}
