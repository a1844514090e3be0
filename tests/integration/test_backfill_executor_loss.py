"""An executor lost in the middle of a sliced backfill costs that slice, not the run.

On a standalone cluster of two workers (one executor each), the backfill is submitted with
``--master spark://...``; a few seconds into its second slice, one executor process is
SIGKILLed. The
run must still finish with the same tables and events as an uninterrupted run (computed in the
test's own session in a second keyspace). Runs on demand: ``./dev.sh test -m faults
tests/integration/test_backfill_executor_loss.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from devkit.sample.data import generate_sample
from enrolment_reconciliation.modes.backfill import BackfillOptions, run_backfill
from tests.helpers import ROOT, events_of, read_tables
from tests.integration.test_backfill import backfill_config, load
from tests.integration.test_standalone_cluster import executor_logs, start_standalone

pytestmark = [pytest.mark.integration, pytest.mark.faults]
KEYSPACE, REFERENCE = "er_test_faults", "er_test_faults_ref"
SLICES = 6
KILL_INTO_SLICE_SECONDS = 6.0


def executor_pids(app_id: str | None = None) -> list[int]:
    """The executor JVMs the standalone workers run (of one application if given)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "CoarseGrainedExecutorBackend" in cmd and (app_id is None or app_id in cmd):
            found.append(proc.pid)
    return found


def test_a_lost_executor_costs_a_slice_not_the_run(spark, tmp_path):
    sample = generate_sample(seed=31, courses=4, users=120, batches_per_course=2)
    reference = backfill_config(tmp_path / "ref", REFERENCE, f"backfill.slices={SLICES}")
    cfg = backfill_config(tmp_path / "run", KEYSPACE, f"backfill.slices={SLICES}")
    load(reference, sample)
    load(cfg, sample)
    uninterrupted = run_backfill(spark, reference, BackfillOptions())

    settings = {
        "lms-cassandra.host": cfg.cassandra.host,
        "lms-cassandra.port": cfg.cassandra.port,
        "redis.host": cfg.redis.host,
        "redis.port": cfg.redis.port,
        "kafka.broker-servers": cfg.kafka.broker_servers,
        "lms-cassandra.keyspace": KEYSPACE,
        "redis.database.relationCache.id": cfg.redis.relation_cache_db,
        "backfill.outbox.location": cfg.locations.backfill_outbox,
        "state.location": tmp_path / "state",
        "state.shared": "true",  # one host: the driver's disk is the workers' disk
        "service.search.basePath": "http://127.0.0.1:9/search",
        "backfill.slices": SLICES,
        "backfill.slice.retry.backoff.seconds": 2,
    }
    sets = [a for key, value in settings.items() for a in ("--set", f"{key}={value}")]
    conf_dir = tmp_path / "spark-conf"
    conf_dir.mkdir()
    (conf_dir / "spark-defaults.conf").write_text(
        "spark.executor.memory 512m\nspark.executor.cores 1\nspark.cores.max 2\n"
        "spark.driver.memory 768m\n"
    )
    env = {**os.environ, "SPARK_CONF_DIR": str(conf_dir), "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("ER_SPARK_MASTER", None)
    with start_standalone(tmp_path / "cluster", workers=2) as cluster:
        command = ["./spark-submit.sh", "backfill", "--master", cluster.url, "--env", cfg.env]
        proc = subprocess.Popen(
            [*command, *sets, "--summary", str(tmp_path / "summary.json")],
            cwd=ROOT,
            env=env,
            stdout=(tmp_path / "driver.result").open("w"),  # the result: the summary
            stderr=subprocess.PIPE,  # the logs, read as they come
            text=True,
        )
        killed: list[int] = []
        lines: list[str] = []
        assert proc.stderr is not None
        deadline = time.monotonic() + 600
        starts = 0
        for line in proc.stderr:
            lines.append(line)
            starts += '"event": "slice-start"' in line
            if not killed and starts == 2:  # the second slice is reading: kill in its midst
                time.sleep(KILL_INTO_SLICE_SECONDS)
                pids = executor_pids()
                assert len(pids) == 2, f"expected two executors, found {pids}"
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            assert time.monotonic() < deadline, "the backfill did not finish in 10 minutes"
        returncode = proc.wait()
        logs = executor_logs(cluster)
    output = "".join(lines)
    (tmp_path / "driver.err").write_text(output)
    assert returncode == 0, output[-4000:] + logs[-3000:]
    assert killed, "the run ended before its first slice line: nothing was killed"
    summary = json.loads(Path(tmp_path / "summary.json").read_text())
    assert summary["slices"] == SLICES and summary["slicesRun"] == SLICES
    assert summary["summary"] == uninterrupted["summary"]
    assert read_tables(cfg) == read_tables(reference)
    assert events_of(cfg) == events_of(reference)
    # the loss really hit the run: the driver saw the executor go
    driver_log = (tmp_path / "driver.err").read_text(errors="replace")
    assert "Lost executor" in driver_log, driver_log[-3000:]
