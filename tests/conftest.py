"""One session-scoped SparkSession for the whole suite.

Tests that need no server (``-m "not integration"``) get a plain ``local[2]`` session without
the connector jars, so the inner loop is fast; when integration tests are selected the session
carries the jars and the test keyspaces exist before it starts.
"""

from __future__ import annotations

import os

import pytest
from pyspark.sql import SparkSession

from devkit.stack import export_stack_environment
from tests.helpers import TEST_KEYSPACE, stack_config

# the local stack logs in with generated passwords (stack/stack.sh), and sessions built outside
# spark-submit find the jars by ER_SPARK_JARS_DIR; jobs started by tests inherit both
export_stack_environment()

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
    "er_test_backfill",
    "er_test_backfill_stream",
    "er_test_faults",
    "er_test_faults_ref",
    "er_test_notebook",
    "er_test_release",
)
SMALL_SESSION = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "2g",
    # tiny literal frames: compiling generated code costs more than interpreting them
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}


ON_DEMAND = ("faults", "soak", "hdfs", "image")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long fault campaigns and the soak run only when asked for by name (``-m faults``)."""
    asked = config.option.markexpr or ""
    deselected = [
        item
        for item in items
        if any(item.get_closest_marker(m) and m not in asked for m in ON_DEMAND)
    ]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


def _create_test_keyspaces() -> None:
    from devkit.schema import apply_schema
    from enrolment_reconciliation.io.cassandra import connect

    cluster, session = connect(stack_config().cassandra)
    try:
        for keyspace in TEST_KEYSPACES:
            apply_schema(session, keyspace)
        cluster.control_connection.wait_for_schema_agreement()
    finally:
        cluster.shutdown()


def _plain_session() -> SparkSession:
    builder = SparkSession.builder.master("local[2]").appName("enrolment-reconciliation-core")
    for key, value in SMALL_SESSION.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


@pytest.fixture(scope="session")
def spark(request: pytest.FixtureRequest) -> SparkSession:
    if any(item.get_closest_marker("integration") for item in request.session.items):
        from enrolment_reconciliation.runtime.session import build_spark_session

        _create_test_keyspaces()
        session = build_spark_session(
            stack_config(),
            app_name="enrolment-reconciliation-tests",
            master="local[2]",
            extra_conf=SMALL_SESSION,
        )
    else:
        session = _plain_session()
    session.sparkContext.setLogLevel("WARN")
    # The jobs the tests start (./spark-submit.sh ...) are short: their JVMs compile with C1
    # only, which starts them about 15% sooner (this session's own JVM keeps both compilers).
    os.environ.setdefault("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1")
    yield session
    session.stop()
