"""Whether the stores a micro-batch needs answer now: cheap checks the stream makes while it
waits to restart a failed query, so that it restarts as soon as a store that was down is back
rather than at the end of its backoff.

A probe is a real request with a short timeout (Cassandra: ``system.local`` through the Python
driver, so a node that accepts connections but is still starting counts as down; Redis:
``PING``), never a bare port check.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from enrolment_reconciliation.io.cassandra import CassandraEndpoint
from enrolment_reconciliation.io.relation_cache import redis_client
from enrolment_reconciliation.runtime.faults import is_infrastructure_fault

if TYPE_CHECKING:
    from enrolment_reconciliation.runtime.config import CassandraSettings, RedisSettings

PROBE_TIMEOUT_SECONDS = 3.0


def cassandra_answers(cassandra: CassandraSettings) -> bool:
    endpoint = dataclasses.replace(
        CassandraEndpoint.of(cassandra),
        request_timeout=PROBE_TIMEOUT_SECONDS,
        connect_timeout=PROBE_TIMEOUT_SECONDS,
    )
    cluster = None
    try:  # a failed connect shuts its own cluster down
        cluster, session = endpoint.connect()
        session.execute("SELECT release_version FROM system.local")
        return True
    except Exception as error:
        if is_infrastructure_fault(error):
            return False
        raise
    finally:
        if cluster is not None:
            cluster.shutdown()


def redis_answers(redis: RedisSettings) -> bool:
    client = redis_client(
        redis, timeout=PROBE_TIMEOUT_SECONDS, connect_timeout=PROBE_TIMEOUT_SECONDS
    )
    try:
        return bool(client.ping())
    except Exception as error:
        if is_infrastructure_fault(error):
            return False
        raise
    finally:
        client.close()


def stores_down(cassandra: CassandraSettings, redis: RedisSettings) -> list[str]:
    """The stores that do not answer now (none: every one answers)."""
    answers = {"cassandra": cassandra_answers(cassandra), "redis": redis_answers(redis)}
    return [name for name, answered in answers.items() if not answered]
