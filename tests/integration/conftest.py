"""Fixtures shared by the integration tests."""

from __future__ import annotations

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
