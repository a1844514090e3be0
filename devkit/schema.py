"""Sunbird's tables in a keyspace of the local stack (tests, the demo, the benchmarks).

The statements are those of ``conf/cql/sunbird_courses.cql``, the production layouts the job
reads and writes; the job never creates these tables itself (only its own lease and run tables).
"""

from __future__ import annotations

from cassandra.cluster import Session

from devkit.paths import CQL_SCHEMA

SIMPLE_REPLICATION = "{'class': 'SimpleStrategy', 'replication_factor': 1}"


def schema_statements(keyspace: str, replication: str = SIMPLE_REPLICATION) -> list[str]:
    """The CQL statements of ``conf/cql/sunbird_courses.cql`` for ``keyspace``."""
    text = "\n".join(
        line for line in CQL_SCHEMA.read_text().splitlines() if not line.lstrip().startswith("--")
    )
    text = text.replace("{keyspace}", keyspace).replace("{replication}", replication)
    return [s.strip() for s in text.split(";") if s.strip()]


def apply_schema(session: Session, keyspace: str, replication: str = SIMPLE_REPLICATION) -> None:
    """Create the keyspace and the tables if absent (idempotent)."""
    for statement in schema_statements(keyspace, replication):
        session.execute(statement, timeout=60)
