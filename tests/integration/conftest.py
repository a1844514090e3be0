"""Fixtures shared by the integration tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from devkit.schema import apply_schema
from enrolment_reconciliation.batch import milestones
from enrolment_reconciliation.io.cassandra import connect
from tests.helpers import KilledAtFaultPoint, stack_config

STREAM_KEYSPACE = "er_test_stream"


@pytest.fixture(scope="module")
def cql():
    cfg = stack_config(keyspace=STREAM_KEYSPACE)
    cluster, session = connect(cfg.cassandra)
    apply_schema(session, STREAM_KEYSPACE)
    session.set_keyspace(STREAM_KEYSPACE)
    yield session
    cluster.shutdown()


@pytest.fixture
def kill_at():
    """``kill_at(point)``: the next run in this process dies (``KilledAtFaultPoint``) when it
    reaches the named milestone (``enrolment_reconciliation.batch.milestones``)."""
    armed: list[str] = []

    def fault(name: str) -> None:
        if armed and armed[0] == name:
            armed.clear()
            raise KilledAtFaultPoint(name)

    stop = milestones.observe(fault)
    yield armed.append
    stop()


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory):
    """A Prometheus Pushgateway (Debian's prometheus-pushgateway) on a free loopback port."""
    binary = shutil.which("prometheus-pushgateway")
    assert binary, "prometheus-pushgateway is missing: ./dev.sh setup installs it"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("pushgateway") / "pushgateway.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/metrics", timeout=2).read()
            break
        except OSError:
            assert proc.poll() is None, "the Pushgateway exited"
            assert time.monotonic() < deadline, "the Pushgateway did not answer within 30 s"
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def pushed(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample the Pushgateway holds: (name, labels, value)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]
