"""Fixtures shared by the streaming integration tests."""

from __future__ import annotations

import pytest

from enrolment_reconciliation.io.cassandra import apply_schema, connect_from_config
from tests.helpers import stack_config

STREAM_KEYSPACE = "er_test_stream"


@pytest.fixture(scope="module")
def cql():
    cfg = stack_config(keyspace=STREAM_KEYSPACE)
    cluster, session = connect_from_config(cfg)
    apply_schema(session, STREAM_KEYSPACE)
    session.set_keyspace(STREAM_KEYSPACE)
    yield session
    cluster.shutdown()
