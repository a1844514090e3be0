"""`./spark-submit.sh sync` against a real Spark standalone cluster (one master, one worker).

The "beyond one machine" path: the master and worker are started from the PySpark distribution
in the venv, the job is submitted through the wrapper with ``--master spark://...``, and the test
checks the outcome in Cassandra and Kafka and that the executor really ran on the worker.
Nothing is skipped: a missing piece (stack, Java, jars) fails the test with a message.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyspark
import pytest
import redis
from kafka import KafkaConsumer

from devkit.schema import apply_schema
from enrolment_reconciliation.io.cassandra import connect
from enrolment_reconciliation.io.relation_cache import redis_client
from tests.helpers import ROOT, stack_config

pytestmark = pytest.mark.integration

KEYSPACE, REDIS_DB = "er_test_cluster", 13
APP_NAME = "enrolment-reconciliation-sync"
SPARK_HOME = Path(pyspark.__file__).resolve().parent
SPARK_CLASS = SPARK_HOME / "bin" / "spark-class"
WORKER_TIMEOUT_S = 90
SUBMIT_TIMEOUT_S = 420


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    if not path.is_file():
        return f"<{path} missing>"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def master_state(webui_port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{webui_port}/json/", timeout=5) as r:
            return json.load(r)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it if it is still there after 20 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class Standalone:
    url: str  # spark://127.0.0.1:<port>
    webui_port: int
    worker_dir: Path
    log_dir: Path

    def state(self) -> dict:
        state = master_state(self.webui_port)
        assert state is not None, f"master web UI on port {self.webui_port} stopped answering"
        return state


@contextmanager
def start_standalone(base: Path, workers: int = 1) -> Iterator[Standalone]:
    """A master and ``workers`` workers (1 core, 1 GiB each) under ``base``, until the block
    ends."""
    assert SPARK_CLASS.is_file(), f"{SPARK_CLASS} missing: is pyspark installed in the venv?"
    dirs = {name: base / name for name in ("work", "logs", "local")}
    for d in dirs.values():
        d.mkdir(parents=True)
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_WORKER_DIR": str(dirs["work"]),  # the worker's --work-dir
        "SPARK_LOG_DIR": str(dirs["logs"]),
        "SPARK_LOCAL_DIRS": str(dirs["local"]),
        "SPARK_DAEMON_MEMORY": "256m",
        "SPARK_DAEMON_JAVA_OPTS": "-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    master_port, master_ui = free_port(), free_port()
    url = f"spark://127.0.0.1:{master_port}"
    commands = {
        "master": "org.apache.spark.deploy.master.Master --host 127.0.0.1"
        f" --port {master_port} --webui-port {master_ui}",
    }
    for n in range(workers):
        commands[f"worker{n or ''}"] = (
            f"org.apache.spark.deploy.worker.Worker {url} --cores 1 --memory 1g"
            f" --host 127.0.0.1 --webui-port {free_port()}"
        )
    procs: dict[str, subprocess.Popen] = {}
    cluster = Standalone(url, master_ui, dirs["work"], dirs["logs"])
    try:
        for name, args in commands.items():
            with (dirs["logs"] / f"{name}.out").open("wb") as out:
                procs[name] = subprocess.Popen(
                    [str(SPARK_CLASS), *args.split()],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        state = None
        while time.monotonic() < deadline:
            for name, proc in procs.items():
                assert proc.poll() is None, (
                    f"standalone {name} exited with {proc.returncode}:\n"
                    + tail(dirs["logs"] / f"{name}.out")
                )
            state = master_state(master_ui)
            alive = [w for w in (state or {}).get("workers", []) if w.get("state") == "ALIVE"]
            if len(alive) == workers:
                break
            time.sleep(1)
        else:
            pytest.fail(
                f"{workers} ALIVE workers did not register with {url} within {WORKER_TIMEOUT_S} s"
                f" (master /json/: {state})\n--- master ---\n{tail(dirs['logs'] / 'master.out')}"
                f"\n--- worker ---\n{tail(dirs['logs'] / 'worker.out')}"
            )
        yield cluster
    finally:
        for proc in reversed(list(procs.values())):
            stop(proc)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory) -> Iterator[Standalone]:
    with start_standalone(tmp_path_factory.mktemp("standalone")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def cfg():
    return stack_config(f"redis.database.relationCache.id={REDIS_DB}", keyspace=KEYSPACE)


@pytest.fixture(scope="module")
def loaded(cfg):
    """A one-enrolment data set: course C1, unit U1, leaves R1 and R2, both completed by u1."""
    try:
        cluster, session = connect(cfg.cassandra)
    except Exception as e:  # the driver's NoHostAvailable and friends
        pytest.fail(
            f"Cassandra at {cfg.cassandra.host}:{cfg.cassandra.port} unreachable "
            f"(bash stack/stack.sh start): {e}"
        )
    apply_schema(session, KEYSPACE)
    session.set_keyspace(KEYSPACE)
    for table in ("user_content_consumption", "user_enrolments", "user_activity_agg"):
        session.execute(f"TRUNCATE {table}", timeout=60)
    consume = session.prepare(
        "INSERT INTO user_content_consumption (userid, courseid, batchid, contentid, status)"
        " VALUES (?, ?, ?, ?, ?)"
    )
    for content in ("R1", "R2"):
        session.execute(consume, ("u1", "C1", "B1", content, 2))
    session.execute(
        "INSERT INTO user_enrolments (userid, courseid, batchid, status, active)"
        " VALUES ('u1', 'C1', 'B1', 1, true)"
    )

    client = redis_client(cfg.redis)
    try:
        client.flushdb()
    except redis.ConnectionError as e:
        pytest.fail(f"Redis at {cfg.redis.host}:{cfg.redis.port} unreachable: {e}")
    client.sadd("C1:C1:leafnodes", "R1", "R2")
    client.sadd("C1:U1:leafnodes", "R1", "R2")
    for content in ("R1", "R2"):
        client.sadd(f"C1:{content}:ancestors", "C1", "U1")
    client.close()
    yield session
    cluster.shutdown()


def certificate_events(bootstrap: str, topic: str, timeout_s: float = 60) -> list[dict]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=2000,
    )
    found: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not found and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=2000).values():
                found += [json.loads(record.value) for record in batch]
    finally:
        consumer.close()
    return found


def executor_logs(cluster: Standalone, app_id: str | None = None) -> str:
    """The stderr of every executor the worker ran (of one application if given)."""
    pattern = f"{app_id or '*'}/*/stderr"
    return "\n".join(p.read_text(errors="replace") for p in cluster.worker_dir.glob(pattern))


def submit(
    standalone: Standalone, cfg, tmp_path: Path, mode_args: list[str]
) -> tuple[subprocess.CompletedProcess, str]:
    """``./spark-submit.sh <mode_args> --master spark://...`` with a small driver and executor."""
    env_name = f"ercluster{uuid.uuid4().hex[:10]}"
    settings = {
        "lms-cassandra.host": cfg.cassandra.host,
        "lms-cassandra.port": cfg.cassandra.port,
        "redis.host": cfg.redis.host,
        "redis.port": cfg.redis.port,
        "kafka.broker-servers": cfg.kafka.broker_servers,
        "lms-cassandra.keyspace": KEYSPACE,
        "redis.database.relationCache.id": REDIS_DB,
        "stream.checkpoint.location": tmp_path / "ckpt",
        "backfill.outbox.location": tmp_path / "backfill-outbox",
        # one host: the driver's disk is the workers' (a cluster master refuses it otherwise)
        "state.location": tmp_path / "state",
        "state.shared": "true",
    }
    sets = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    command = [
        "./spark-submit.sh",
        *mode_args,
        "--master",
        standalone.url,
        "--env",
        env_name,
        *sets,
    ]
    # A small executor and driver (spark-submit reads spark-defaults.conf from SPARK_CONF_DIR).
    conf_dir = tmp_path / "spark-conf"
    conf_dir.mkdir(exist_ok=True)
    (conf_dir / "spark-defaults.conf").write_text(
        "spark.executor.memory 512m\nspark.cores.max 1\nspark.driver.memory 768m\n"
    )
    env = {**os.environ, "SPARK_CONF_DIR": str(conf_dir), "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("ER_SPARK_MASTER", None)
    started = time.monotonic()
    try:
        run = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SUBMIT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"spark-submit.sh did not finish within {SUBMIT_TIMEOUT_S} s:\n{e.stderr}"
            f"\n--- executor stderr ---\n{executor_logs(standalone)[-4000:]}"
        )
    elapsed = time.monotonic() - started
    assert run.returncode == 0, (
        f"spark-submit.sh exited {run.returncode} after {elapsed:.0f} s\n--- stdout ---\n"
        f"{run.stdout[-4000:]}\n--- stderr ---\n{run.stderr[-8000:]}"
        f"\n--- executor stderr ---\n{executor_logs(standalone)[-4000:]}"
    )
    return run, env_name


def finished_app(standalone: Standalone, name: str) -> dict:
    """The master's record of the application, once it has completed."""
    deadline = time.monotonic() + 30
    apps: list[dict] = []
    while not apps and time.monotonic() < deadline:
        apps = [a for a in standalone.state().get("completedapps", []) if a["name"] == name]
        time.sleep(0 if apps else 1)
    assert len(apps) == 1, f"{name} not among the master's completed apps: {standalone.state()}"
    return apps[0]


def test_sync_runs_on_a_standalone_cluster(standalone, cfg, loaded, tmp_path):
    run, env_name = submit(
        standalone, cfg, tmp_path, ["sync", "--user", "u1", "--course", "C1", "--batch", "B1"]
    )

    # The outcome in Cassandra: the enrolment is complete, course and unit aggregates written.
    row = loaded.execute(
        "SELECT status, progress, completedon FROM user_enrolments"
        " WHERE userid = 'u1' AND courseid = 'C1' AND batchid = 'B1'"
    ).one()
    assert row is not None, "user_enrolments row u1/C1/B1 disappeared"
    assert (row.status, row.progress) == (2, 2), (row, run.stdout[-4000:])
    assert row.completedon is not None, row
    for activity in ("C1", "U1"):
        aggs = loaded.execute(
            "SELECT context_id, aggregates FROM user_activity_agg WHERE activity_type = 'Course'"
            " AND activity_id = %s AND user_id = 'u1'",
            (activity,),
        ).all()
        assert [(a.context_id, dict(a.aggregates)) for a in aggs] == [
            ("cb:B1", {"completedCount": 2.0})
        ], (activity, aggs)

    # It ran on the standalone cluster: the master lists the application as completed, and the
    # worker ran its executor (a folder per application) with the shipped zip and Python tasks.
    app = finished_app(standalone, APP_NAME)
    assert app["state"] == "FINISHED", app
    executor_dirs = [p for p in (standalone.worker_dir / app["id"]).glob("*") if p.is_dir()]
    assert executor_dirs, (
        f"the worker ran no executor for {app['id']}: {sorted(standalone.worker_dir.glob('*/*'))}"
    )
    assert all((d / "enrolment_reconciliation.zip").is_file() for d in executor_dirs), [
        sorted(p.name for p in d.iterdir()) for d in executor_dirs
    ]
    stderr = executor_logs(standalone, app["id"])
    assert "Finished task" in stderr, stderr[-4000:]
    assert "PythonRunner" in stderr, "no Python task ran on the executor:\n" + stderr[-4000:]

    # The certificate request reached Kafka.
    topic = f"{env_name}.issue.certificate.request"
    events = certificate_events(cfg.kafka.broker_servers, topic)
    assert len(events) == 1, f"expected one certificate event on {topic}, got {events}"
    edata = events[0]["edata"]
    expected = ("issue-certificate", ["u1"], "C1", "B1")
    assert (edata["action"], edata["userIds"], edata["courseId"], edata["batchId"]) == expected, (
        events[0]
    )


def test_backfill_runs_on_a_standalone_cluster(standalone, cfg, loaded, tmp_path):
    consume = loaded.prepare(
        "INSERT INTO user_content_consumption (userid, courseid, batchid, contentid, status)"
        " VALUES (?, ?, ?, ?, ?)"
    )
    for content in ("R1", "R2"):
        loaded.execute(consume, ("u2", "C1", "B1", content, 2))
    loaded.execute(
        "INSERT INTO user_enrolments (userid, courseid, batchid, status, active)"
        " VALUES ('u2', 'C1', 'B1', 0, true)"
    )
    run, _ = submit(standalone, cfg, tmp_path, ["backfill", "--courses", "C1"])
    summary = json.loads(run.stdout)  # the result alone on standard output
    assert summary["summary"]["scanned"] == 2 and summary["summary"]["newlyCompleted"] >= 1
    row = loaded.execute(
        "SELECT status, progress FROM user_enrolments"
        " WHERE userid = 'u2' AND courseid = 'C1' AND batchid = 'B1'"
    ).one()
    assert (row.status, row.progress) == (2, 2)
    app = finished_app(standalone, "enrolment-reconciliation-backfill")
    assert app["state"] == "FINISHED", app
    assert "PythonRunner" in executor_logs(standalone, app["id"])  # the aggregate writer


def test_a_dry_run_on_a_standalone_cluster_writes_its_report_to_a_uri(
    standalone, cfg, loaded, tmp_path
):
    users = tmp_path / "users.txt"
    users.write_text("u1\nu2\n")
    report = tmp_path / "report"
    run, _ = submit(
        standalone,
        cfg,
        tmp_path,
        ["backfill", "--dry-run", report.as_uri(), "--users-file", users.as_uri()],
    )
    written = json.loads((report / "summary.json").read_text())
    assert written["dryRun"] is True and written["summary"]["scanned"] >= 1, run.stdout[-3000:]
    assert written["scope"]["usersFile"] == users.as_uri()
    assert (report / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = (report / "changes.csv").read_text().splitlines()[0]
    assert header.startswith("userid,courseid,batchid,statusBefore,status")
    for kind in ("audit", "certificate", "failed"):
        assert (report / f"{kind}-events.jsonl").is_file(), kind
    assert not (report / ".parts").exists()
