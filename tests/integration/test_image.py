"""The container image (``./dev.sh image``: podman, a Debian base from Debian's archive, the job
from a release) runs the demo's stream and a backfill dry run against the local stack, with the
results the demo gets. On demand (it builds the image): ``./dev.sh test -m image``."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from devkit import demo
from devkit.paths import PROJECT_ROOT
from devkit.stack import stack_config
from enrolment_reconciliation.runtime.config import load_config
from tests.helpers import messages_on

pytestmark = [pytest.mark.integration, pytest.mark.image]
TAG = "localhost/enrolment-reconciliation:test"
KEYSPACE = "er_test_image"
HOME = "/opt/enrolment-reconciliation"
CREDENTIALS = ("LMS_CASSANDRA_USERNAME", "LMS_CASSANDRA_PASSWORD", "REDIS_PASSWORD")
PODMAN = str(PROJECT_ROOT / "deploy" / "image" / "podman.sh")


@pytest.fixture(scope="module")
def image() -> str:
    built = subprocess.run(
        [str(PROJECT_ROOT / "dev.sh"), "image", TAG],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    print(built.stderr[-600:])  # the build's times and the image's size, for the record
    return TAG


def _conf(folder: Path, env: str) -> Path:
    cfg = stack_config(keyspace=KEYSPACE)
    text = f"""
env = "{env}"
kafka.broker-servers = "{cfg.kafka.broker_servers}"
lms-cassandra {{ host = "{cfg.cassandra.host}", port = {cfg.cassandra.port} }}
lms-cassandra.keyspace = {KEYSPACE}
redis {{ host = "{cfg.redis.host}", port = {cfg.redis.port} }}
service.search.basePath = "http://127.0.0.1:9/search"
"""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "production.conf").write_text(text)
    return folder / "production.conf"


def _run(image: str, conf: Path, *args: str, volumes: tuple[str, ...] = ()) -> str:
    """``podman run`` of the image with the host's network, the config and the credentials."""
    secrets = [a for k in CREDENTIALS if k in os.environ for a in ("-e", f"{k}={os.environ[k]}")]
    mounts = [a for v in (f"{conf}:{HOME}/conf/production.conf:ro", *volumes) for a in ("-v", v)]
    done = subprocess.run(
        [PODMAN, "run", "--rm", "--network", "host", *secrets, *mounts, image, *args,
         "--config", f"{HOME}/conf/production.conf"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_the_image_runs_the_demo_stream_and_a_backfill_dry_run(image, tmp_path):
    env = f"image{uuid.uuid4().hex[:6]}"
    conf = _conf(tmp_path / "conf", env)
    cfg = load_config(conf)
    demo.prepare(cfg, seed=42, courses=3, users=60)  # the demo's sample data and requests

    _run(image, conf, "stream", "--trigger", "available-now")
    certificates = messages_on(cfg, cfg.kafka.certissue_topic)
    audits = messages_on(cfg, cfg.kafka.audit_topic)
    failed = messages_on(cfg, cfg.kafka.failed_topic)
    assert len(certificates) == len(audits) > 0  # the demo's learners who complete
    assert len(failed) >= len(demo.BAD_MESSAGES)  # and its bad requests, with their reasons
    assert {a["mid"] for a in audits}.isdisjoint({c["mid"] for c in certificates})

    report = tmp_path / "report"
    report.mkdir()
    report.chmod(0o777)  # the image's user (uid 10001) writes it
    _run(image, conf, "backfill", "--dry-run", "/report", volumes=(f"{report}:/report",))
    written = json.loads((report / "summary.json").read_text())
    assert written["dryRun"] is True and written["summary"]["scanned"] > 0
