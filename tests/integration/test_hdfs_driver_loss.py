"""A driver on a cluster is cattle: it dies, and comes back on another host with an empty disk.

Every piece of the job's state (the stream's checkpoint and outbox, the backfill's outbox and
staging) is on a real HDFS (``stack/stack.sh start hdfs``: a NameNode and a DataNode from Maven
Central's Hadoop jars), the lease and the backfill's run records in Cassandra; the job runs on a
standalone cluster of a master and two workers. Each time the driver is killed, its local
directories (``spark.local.dir``, ``java.io.tmpdir``, ``TMPDIR``) are wiped before it starts
again, as a new pod or host would have them. Then:

* the stream, killed between a micro-batch's writes and its publish, then again at a moment
  in its run, ends with the tables and events of an uninterrupted run (no sync request and no
  certificate request lost; a duplicate only with the same mid);
* a backfill killed after two of its four slices resumes at the third and ends with the tables
  and events of an uninterrupted run.

On demand (heavy): ``./dev.sh test -m hdfs`` (docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.paths import PROJECT_ROOT, STACK_ENV
from devkit.sample.data import SampleData, generate_sample
from devkit.sample.loader import load_sample
from devkit.stack import expire_lease, log_events, stack_overrides
from enrolment_reconciliation.batch.milestones import AFTER_ENROLMENT_WRITE, AFTER_SLICE_RECORDED
from enrolment_reconciliation.modes.backfill import BackfillOptions, run_backfill
from enrolment_reconciliation.modes.stream import run_stream
from enrolment_reconciliation.runtime.config import JobConfig, load_config
from enrolment_reconciliation.runtime.jvm import HadoopFileSystem
from tests.fault_injection.sitecustomize import FAULT_POINT_ENV, FAULT_SKIP_ENV
from tests.helpers import (
    as_cli_args,
    event_copies,
    produce,
    read_tables,
    sync_request,
    with_fault_injection,
)
from tests.integration.test_standalone_cluster import Standalone, start_standalone

pytestmark = [pytest.mark.integration, pytest.mark.hdfs]
KEYSPACE, REFERENCE, REDIS_DB = "er_test_faults", "er_test_faults_ref", 12
BATCH, SLICES = 8, 4


@pytest.fixture(scope="module")
def hdfs() -> str:
    """The stack's HDFS (started if it is not running): its URL."""
    started = subprocess.run(
        ["bash", str(PROJECT_ROOT / "stack" / "stack.sh"), "start", "hdfs"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    settings = dict(
        line.split("=", 1) for line in STACK_ENV.read_text().splitlines() if "=" in line
    )
    return settings["HDFS_URL"].strip().strip('"')


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Standalone]:
    with start_standalone(tmp_path_factory.mktemp("cluster"), workers=2) as standalone:
        yield standalone


class Driver:
    """``./spark-submit.sh`` on the cluster, its driver's local directories under ``home``."""

    def __init__(self, cluster: Standalone, home: Path, settings: list[str]) -> None:
        self.cluster, self.home, self.settings = cluster, home, settings
        self.conf_dir = home.parent / f"{home.name}-spark-conf"
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "spark-defaults.conf").write_text(
            "spark.executor.memory 512m\nspark.executor.cores 1\nspark.cores.max 2\n"
            "spark.driver.memory 768m\n"
            # the client's default replication is 3: one DataNode holds one copy
            "spark.hadoop.dfs.replication 1\n"
        )
        self.log = home.parent / f"{home.name}.log"

    def wipe(self) -> None:
        """What a driver that comes back on another host finds of its local disk: nothing."""
        shutil.rmtree(self.home, ignore_errors=True)
        for part in ("local", "tmp"):
            (self.home / part).mkdir(parents=True)

    def start(self, mode: str, args: list[str], **env: str) -> subprocess.Popen:
        self.wipe()
        command = [
            str(PROJECT_ROOT / "spark-submit.sh"), mode, *args, *self.settings,
            "--master", self.cluster.url,
            "--conf", f"spark.local.dir={self.home / 'local'}",
            "--driver-java-options", f"-Djava.io.tmpdir={self.home / 'tmp'}",
        ]  # fmt: skip
        environ = {
            **os.environ,
            "SPARK_CONF_DIR": str(self.conf_dir),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "TMPDIR": str(self.home / "tmp"),
            **env,
        }
        environ.pop("ER_SPARK_MASTER", None)
        out = self.log.open("a")
        return subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=with_fault_injection(environ),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: a kill reaches the JVM and Python
        )

    def events(self, event: str) -> list[dict]:
        return log_events(self.log.read_text(errors="replace") if self.log.exists() else "", event)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _settings(keyspace: str, env: str, state: str) -> tuple[JobConfig, list[str]]:
    overrides = [
        *stack_overrides(keyspace),
        f"redis.database.relationCache.id={REDIS_DB}",
        "service.search.basePath=http://127.0.0.1:9/search",
        f"state.location={state}",
        f"backfill.slices={SLICES}",
        "backfill.slice.retry.backoff.seconds=1",
    ]
    return load_config(env=env, overrides=overrides), ["--env", env, *as_cli_args(overrides)]


def _same_as_uninterrupted(cfg: JobConfig, reference: JobConfig) -> dict[str, int]:
    assert read_tables(cfg) == read_tables(reference)
    expected, delivered = event_copies(reference), event_copies(cfg)
    assert expected and set(delivered) == set(expected)  # every event, none invented
    for mid, copies in delivered.items():
        assert all(c == expected[mid][0] for c in copies), mid  # a duplicate is the same event
    return {"events": len(expected), "duplicates": sum(len(c) - 1 for c in delivered.values())}


def _hdfs_names(spark, directory: str) -> list[str]:
    """The names in an HDFS directory, read through the job's own Hadoop door."""
    return HadoopFileSystem(spark, directory).list_names(directory)


def _finish(proc: subprocess.Popen, driver: Driver, timeout: float = 600) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the job did not finish within {timeout} s:\n{driver.tail()}")


@pytest.fixture(scope="module")
def sample() -> SampleData:
    return generate_sample(seed=23, courses=3, users=14, batches_per_course=2)  # 6 to complete


def test_the_stream_loses_nothing_when_its_driver_dies_with_its_disk(
    spark, hdfs, cluster, sample, tmp_path
):
    env = f"hdfs{uuid.uuid4().hex[:8]}"
    state = f"{hdfs}/er-test/{env}"
    cfg, args = _settings(KEYSPACE, env, state)
    reference, _ = _settings(REFERENCE, f"{env}ref", str(tmp_path / "reference-state"))
    before = {(e.userid, e.courseid, e.batchid): e.status for e in sample.enrolments()}
    for target in (reference, cfg):
        load_sample(sample, target, truncate=True)
    produce(reference, [sync_request(*key).encode() for key in before])
    run_stream(
        spark,
        reference.with_overrides(
            "stream.trigger.mode=available-now", f"stream.max.offsets.per.trigger={BATCH}"
        ),
    )
    # the requests that complete an enrolment spread over the topic, one first: the micro-batch
    # killed before its publish and the ones after it have certificates to publish
    after = read_tables(reference).enrolments
    completing = [key for key, status in before.items() if status != 2 and after[key][0] == 2]
    others = [key for key in before if key not in completing]
    step = len(others) // len(completing)
    order = [
        key
        for i, first in enumerate(completing)
        for key in (first, *others[i * step : (i + 1) * step])
    ] + others[len(completing) * step :]
    assert sorted(order) == sorted(before) and len(completing) >= 3
    requests = [sync_request(*key).encode() for key in order]
    produce(cfg, requests)
    driver = Driver(cluster, tmp_path / "driver", args)
    stream = ["--max-offsets-per-trigger", str(BATCH)]

    # 1. killed between a micro-batch's writes and its publish: its events wait in the outbox,
    #    on HDFS, for the driver that comes back
    at_publish = {FAULT_POINT_ENV: AFTER_ENROLMENT_WRITE}
    crashed = driver.start("stream", ["--trigger", "available-now", *stream], **at_publish)
    assert _finish(crashed, driver) != 0, driver.tail()
    # 2. started on an empty disk, it recovers the outbox; killed again once a batch is applied
    batches_before = len(driver.events("micro-batch"))  # the log holds every run's lines
    running = driver.start("stream", ["--trigger", "processing-time=1s", *stream])
    deadline = time.monotonic() + 300
    try:
        while len(driver.events("micro-batch")) == batches_before:
            assert running.poll() is None, driver.tail()
            assert time.monotonic() < deadline, driver.tail()
            time.sleep(0.5)
    finally:  # killed also when the wait failed: no driver outlives the test
        if running.poll() is None:
            os.killpg(running.pid, signal.SIGKILL)
        running.wait()
    assert driver.events("outbox-recovered")
    # 3. once more on an empty disk, it drains the topic from its checkpoint on HDFS
    drained = driver.start("stream", ["--trigger", "available-now", *stream])
    assert _finish(drained, driver) == 0, driver.tail()
    # what the drivers shared was on HDFS: the query's commits, one per micro-batch applied
    commits = _hdfs_names(spark, f"{cfg.locations.stream_query}/commits")
    assert len([name for name in commits if name.isdigit()]) >= len(requests) // BATCH
    figures = _same_as_uninterrupted(cfg, reference)
    print("hdfs stream:", json.dumps(figures | {"requests": len(requests)}))


def test_a_backfill_resumes_from_hdfs_when_its_driver_dies_with_its_disk(
    spark, hdfs, cluster, sample, tmp_path
):
    env = f"hdfsbf{uuid.uuid4().hex[:8]}"
    cfg, args = _settings(KEYSPACE, env, f"{hdfs}/er-test/{env}")
    reference, _ = _settings(REFERENCE, f"{env}ref", str(tmp_path / "reference-state"))
    for target in (reference, cfg):
        load_sample(sample, target, truncate=True)
    uninterrupted = run_backfill(spark, reference, BackfillOptions(restart=True))
    driver = Driver(cluster, tmp_path / "driver", args)

    expire_lease(cfg)  # another test's killed run may hold it still
    killed = driver.start(
        "backfill", ["--restart"], **{FAULT_POINT_ENV: AFTER_SLICE_RECORDED, FAULT_SKIP_ENV: "1"}
    )
    assert _finish(killed, driver) not in (0, 3), driver.tail()  # killed, not refused
    expire_lease(cfg)  # a killed run never releases the lease: its TTL does, later
    # what the resumed run needs of the killed one is on HDFS: the users it staged
    assert _hdfs_names(spark, cfg.locations.backfill_staging), "nothing staged on HDFS"
    summary = tmp_path / "summary.json"
    resumed = driver.start("backfill", ["--summary", str(summary)])
    assert _finish(resumed, driver) == 0, driver.tail()
    result = json.loads(summary.read_text())
    # two slices were written, published and recorded before the kill (their record on HDFS)
    assert result["resumedFrom"]["slicesDone"] == 2 and result["slicesRun"] == SLICES - 2
    assert result["summary"] == uninterrupted["summary"]
    figures = _same_as_uninterrupted(cfg, reference)
    print("hdfs backfill:", json.dumps(figures | {"slices": SLICES}))
