"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from enrolment_reconciliation import apply, backfill
from enrolment_reconciliation.io.cassandra import apply_schema, connect_from_config
from tests.helpers import KilledAtFaultPoint, stack_config

STREAM_KEYSPACE = "er_test_stream"


@pytest.fixture(scope="module")
def cql():
    cfg = stack_config(keyspace=STREAM_KEYSPACE)
    cluster, session = connect_from_config(cfg)
    apply_schema(session, STREAM_KEYSPACE)
    session.set_keyspace(STREAM_KEYSPACE)
    yield session
    cluster.shutdown()


@pytest.fixture
def kill_at(monkeypatch):
    """``kill_at(point)``: the next backfill dies when it reaches the named fault point."""
    armed: list[str] = []

    def fault(name: str) -> None:
        if armed and armed[0] == name:
            armed.clear()
            raise KilledAtFaultPoint(name)

    monkeypatch.setattr(apply, "fault_point", fault)
    monkeypatch.setattr(backfill, "fault_point", fault)
    return lambda point: armed.append(point)
