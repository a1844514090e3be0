"""A release an operator installs: ``./dev.sh release DIR`` lays it out (the job as a wheel in its
own venv, the jars, the wrapper, the templates, the deploy files), and a backfill dry run runs
from it with the repository out of reach, on the Spark options the operator gave."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from devkit.sample.data import generate_sample
from devkit.sample.loader import load_sample
from tests.helpers import ROOT, json_lines, stack_config
from tests.integration.conftest import pushed

pytestmark = pytest.mark.integration
KEYSPACE = "er_test_release"
CREDENTIALS = ("LMS_CASSANDRA_USERNAME", "LMS_CASSANDRA_PASSWORD", "REDIS_PASSWORD")


def production_conf(release: Path) -> Path:
    """The template, filled in as an operator would, for the local stack."""
    cfg = stack_config(keyspace=KEYSPACE)
    chosen = {
        "kafka.broker-servers": cfg.kafka.broker_servers,
        "lms-cassandra.host": cfg.cassandra.host,
        "redis.host": cfg.redis.host,
        "service.search.basePath": "http://127.0.0.1:9/search",
        "state.location": "",  # the release's own state/, as spark-submit.sh sets it
    }
    # later assignments win in HOCON: the template's CHOOSE values are replaced below them
    text = (release / "conf" / "templates" / "production.conf").read_text() + "\n"
    text += "\n".join(f'{k} = "{v}"' for k, v in chosen.items())
    text += f'\nenv = "release"\nlms-cassandra.port = {cfg.cassandra.port}\n'
    text += f"redis.port = {cfg.redis.port}\nlms-cassandra.keyspace = {KEYSPACE}\n"
    conf = release / "conf" / "production.conf"
    conf.write_text(text)
    return conf


def test_a_release_runs_a_dry_run_away_from_the_repository_with_the_operators_options(
    tmp_path, pushgateway
):
    release = tmp_path / "opt" / "enrolment-reconciliation"
    built = subprocess.run(
        [str(ROOT / "dev.sh"), "release", str(release)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    for part in (
        "bin/spark-submit.sh",
        "jobs/enrolment_reconciliation_job.py",
        "RELEASE",
        "conf/templates/credentials.env",
        "deploy/enrolment-reconciliation-stream.service",
    ):
        assert (release / part).is_file(), part
    assert list((release / "jars").glob("spark-cassandra-connector_*.jar"))
    shipped = zipfile.ZipFile(release / "lib" / "enrolment_reconciliation.zip").namelist()
    assert shipped and all(n.startswith("enrolment_reconciliation/") for n in shipped)

    load_sample(generate_sample(seed=5, courses=2, users=40), stack_config(keyspace=KEYSPACE))
    conf = production_conf(release)
    report = tmp_path / "report"
    # only what an operator's shell has: no repository on any path, credentials from the env
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ["HOME"]}
    env |= {k: os.environ[k] for k in CREDENTIALS if k in os.environ}
    run = subprocess.run(
        [str(release / "bin" / "spark-submit.sh"), "backfill", "--dry-run", str(report),
         "--config", str(conf), "--conf", "spark.sql.shuffle.partitions=64",
         "--driver-memory", "2g", "--set", f"metrics.pushgateway.url={pushgateway}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    [facts] = json_lines(run.stderr, "spark-session")  # read back from the running application
    assert (facts["shufflePartitions"], facts["driverMemory"]) == ("64", "2g")
    assert facts["driverHeapMb"] > 1500  # -Xmx2g, not Spark's 1 GiB default
    assert str(ROOT) not in output.replace(str(tmp_path), "")  # nothing came from the checkout
    summary = json.loads((report / "summary.json").read_text())
    assert summary["dryRun"] is True and summary["summary"]["scanned"] > 0
    assert f"location='{release}/state'" in output  # state under the release, not /tmp
    outcome = {
        name: value
        for name, labels, value in pushed(pushgateway)
        if labels.get("env") == "release" and labels.get("mode") == "backfill-dry-run"
    }
    assert outcome["enrolment_reconciliation_run_exit_code"] == 0
    assert outcome["enrolment_reconciliation_run_backfill_enrolments_scanned_count"] > 0
    assert outcome["enrolment_reconciliation_run_success_timestamp_seconds"] > 0
