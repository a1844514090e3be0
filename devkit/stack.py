"""The local stack (``stack/stack.sh``) as the demo, tests and benchmarks reach it.

``stack.sh start`` writes the ports it really uses to ``$STACK_DIR/stack.env``; these helpers
turn that file into ``--set`` overrides and a :class:`JobConfig`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from devkit.paths import JARS_DIR, PROJECT_ROOT, SPARK_SUBMIT, STACK_ENV
from enrolment_reconciliation.core.counters import Counter
from enrolment_reconciliation.core.requests import sync_request_event
from enrolment_reconciliation.core.schemas import SYNC_ACTION
from enrolment_reconciliation.io.cassandra import connect
from enrolment_reconciliation.runtime.config import JobConfig, load_config
from enrolment_reconciliation.runtime.exit_codes import ExitCode


def log_events(text: str, event: str | None = None) -> list[dict[str, Any]]:
    """The job's structured log lines in ``text`` (a run's standard error, a log file), one
    JSON object each (or, on a terminal, ``<time> <level> <logger>: {...}``); only ``event``'s
    when given."""
    found = []
    for line in text.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record and event in (None, record["event"]):
            found.append(record)
    return found


def stack_settings() -> dict[str, str]:
    """Host/port settings written by `stack/stack.sh start` (defaults if absent)."""
    settings = {
        "CASSANDRA_HOST": "127.0.0.1",
        "CASSANDRA_PORT": "9042",
        "KAFKA_BOOTSTRAP": "127.0.0.1:9092",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": "6379",
    }
    if STACK_ENV.is_file():
        for line in STACK_ENV.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() in settings:
                settings[key.strip()] = value.strip().strip('"')
    return settings


def export_stack_environment(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Put the local stack's generated credentials (``.stack/secrets.env``) and the folder of the
    Spark jars (``ER_SPARK_JARS_DIR``) into the environment, where the job reads them, unless
    already set. Returns the names set (never the values)."""
    environ = os.environ if environ is None else environ
    secrets = STACK_ENV.with_name("secrets.env")
    names = []
    if "ER_SPARK_JARS_DIR" not in environ and "ER_SPARK_JARS" not in environ:
        environ["ER_SPARK_JARS_DIR"] = str(JARS_DIR)
        names.append("ER_SPARK_JARS_DIR")
    if secrets.is_file():
        for line in secrets.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#") and key.strip() not in environ:
                environ[key.strip()] = value.strip()
                names.append(key.strip())
    return names


def stack_overrides(keyspace: str | None = None) -> list[str]:
    """``--set`` overrides pointing the job at the local stack (and a keyspace)."""
    s = stack_settings()
    overrides = [
        f"lms-cassandra.host={s['CASSANDRA_HOST']}",
        f"lms-cassandra.port={s['CASSANDRA_PORT']}",
        f"kafka.broker-servers={s['KAFKA_BOOTSTRAP']}",
        f"redis.host={s['REDIS_HOST']}",
        f"redis.port={s['REDIS_PORT']}",
    ]
    if keyspace:
        overrides.append(f"lms-cassandra.keyspace={keyspace}")
    return overrides


def stack_config(*overrides: str, keyspace: str | None = None, env: str | None = None) -> JobConfig:
    """The job's config pointed at the local stack."""
    return load_config(env=env, overrides=[*stack_overrides(keyspace), *overrides])


def sync_request(
    user: Any, course: Any, batch: Any, action: str = SYNC_ACTION, *, ets: int | None = None
) -> str:
    """A sync request as lms-service publishes it (any JSON values, for hostile input too)."""
    return json.dumps(sync_request_event(user, course, batch, action=action, ets=ets))


class StreamProcess:
    """``spark-submit.sh stream --trigger <trigger> <args>`` in the background, its output
    appended to ``log``; what it did is read back from its JSON log lines.

    ``supervise=True`` restarts it when it exits with ``ExitCode.STUCK`` (75: a micro-batch stuck
    beyond its watchdog), as the systemd unit in deploy/ does.

    Example::

        stream = StreamProcess(["--env", "demo"], Path("stream.log"))
        stream.wait_for_batches(1, timeout=300)
        stream.processed()  # requests the micro-batches have reported
        stream.stop()
    """

    def __init__(
        self,
        args: Sequence[str],
        log: Path,
        *,
        trigger: str = "processing-time=1s",
        environ: Mapping[str, str] | None = None,
        supervise: bool = False,
    ) -> None:
        self.log = log
        self.command = [str(SPARK_SUBMIT), "stream", "--trigger", trigger]
        self.command += args
        self.environ = {**os.environ, **(environ or {})}
        self.process_restarts = 0
        self._stopping = False
        self._out = log.open("a")
        self.proc = self._start()
        if supervise:
            threading.Thread(target=self._supervise, daemon=True).start()

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(
            self.command,
            cwd=PROJECT_ROOT,
            env=self.environ,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches the JVM and Python
        )

    def _supervise(self) -> None:
        while not self._stopping:
            if self.proc.poll() == ExitCode.STUCK and not self._stopping:
                self.process_restarts += 1
                self.proc = self._start()
            time.sleep(1)

    def _events(self, event: str) -> list[dict[str, Any]]:
        return log_events(self.log.read_text(errors="replace"), event)

    def batches(self) -> list[dict[str, Any]]:
        """The job's ``micro-batch`` log records, oldest first."""
        return self._events("micro-batch")

    def processed(self) -> int:
        """Requests the micro-batches have reported so far."""
        return sum(b["counters"][Counter.TOTAL_EVENTS] for b in self.batches())

    def failed_batches(self) -> int:
        """Micro-batches that failed (each restarts the query from its checkpoint)."""
        return len(self._events("query-failed"))

    def alive(self) -> bool:
        return self.proc.poll() is None or self.proc.returncode == ExitCode.STUCK

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def wait_for_batches(self, count: int, timeout: float) -> None:
        """Until ``count`` micro-batches are logged; raises if the stream exits or time runs out."""
        deadline = time.monotonic() + timeout
        while len(self.batches()) < count:
            if not self.alive():
                raise RuntimeError(f"the stream exited:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no micro-batch within {timeout}s:\n{self.tail()}")
            time.sleep(0.5)

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM to the process group (SIGKILL after ``timeout``); ends supervision."""
        self._stopping = True
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()


def expire_lease(cfg: JobConfig) -> None:
    """What the backfill lease's TTL does ``backfill.lease.seconds`` after a killed run, at
    once (a killed run never releases it)."""
    cluster, session = connect(cfg.cassandra, keyspace=cfg.cassandra.keyspace)
    try:
        keyspace = cluster.metadata.keyspaces[cfg.cassandra.keyspace]
        if cfg.backfill.lease_table in keyspace.tables:  # made by the first backfill
            session.execute(f"TRUNCATE {cfg.backfill.lease_table}")
    finally:
        cluster.shutdown()


def messages_on(cfg: JobConfig, topic: str, timeout_ms: int = 60000) -> list[dict]:
    """Every message on ``topic`` now, parsed, in offset order per partition: read from the
    beginning up to the end offsets the topic had when asked, so it returns as soon as it has
    them (no waiting for silence; none if the topic does not exist). ``timeout_ms`` bounds the
    read of a topic that is there."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=cfg.kafka.broker_servers,
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=8 * 2**20,  # a benchmark's topics hold many events
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not assigned:
            return []
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        records: list = []
        deadline = time.monotonic() + timeout_ms / 1000
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not read to its end in {timeout_ms} ms")
            for batch in consumer.poll(timeout_ms=200).values():
                records += batch
        records.sort(key=lambda r: (r.partition, r.offset))
        return [json.loads(r.value) for r in records]
    finally:
        consumer.close()
