"""One session-scoped SparkSession for the whole suite, and the local stack's settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from enrolment_reconciliation.config import JobConfig, load_config
from enrolment_reconciliation.spark import build_spark_session

ROOT = Path(__file__).resolve().parents[1]
STACK_ENV = Path(os.environ.get("STACK_DIR", ROOT / ".stack")) / "stack.env"
TEST_KEYSPACE = "er_test"


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


def stack_config(*overrides: str, keyspace: str = TEST_KEYSPACE) -> JobConfig:
    """The job's config pointed at the local stack and a test keyspace."""
    s = stack_settings()
    return load_config(
        overrides=[
            f"lms-cassandra.host={s['CASSANDRA_HOST']}",
            f"lms-cassandra.port={s['CASSANDRA_PORT']}",
            f"kafka.broker-servers={s['KAFKA_BOOTSTRAP']}",
            f"redis.host={s['REDIS_HOST']}",
            f"redis.port={s['REDIS_PORT']}",
            f"lms-cassandra.keyspace={keyspace}",
            *overrides,
        ]
    )


# Every keyspace the integration tests use. They are created before the SparkSession starts:
# the connector caches schema metadata, and a keyspace created a moment before a Spark read
# may not be in its cache yet.
TEST_KEYSPACES = (
    TEST_KEYSPACE,
    "er_test_core",
    "er_test_stream",
    "er_test_connectors",
    "er_test_cluster",
    "er_test_loader",
)


def _create_test_keyspaces() -> None:
    from enrolment_reconciliation.io.cassandra import apply_schema, connect_from_config

    cluster, session = connect_from_config(stack_config())
    try:
        for keyspace in TEST_KEYSPACES:
            apply_schema(session, keyspace)
        cluster.control_connection.wait_for_schema_agreement()
    finally:
        cluster.shutdown()


@pytest.fixture(scope="session")
def spark(request: pytest.FixtureRequest) -> SparkSession:
    if any(item.get_closest_marker("integration") for item in request.session.items):
        _create_test_keyspaces()
    session = build_spark_session(
        stack_config(),
        app_name="enrolment-reconciliation-tests",
        master="local[2]",
        extra_conf={
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.driver.memory": "2g",
        },
    )
    session.sparkContext.setLogLevel("WARN")
    yield session
    session.stop()
