"""The SparkSession of the job: the connector's SQL extension, the Cassandra connection, and only
what the job needs.

Under ``spark-submit`` (``spark-submit.sh``, a cluster) the jars are already on the classpath.
Elsewhere (a notebook, the tests) the connector and Kafka jars are taken from ``ER_SPARK_JARS``
(a comma-separated list) or the folder ``ER_SPARK_JARS_DIR``; the job never looks for them in a
checkout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import SparkSession

from enrolment_reconciliation.runtime.jvm import driver_max_heap_bytes

if TYPE_CHECKING:
    from enrolment_reconciliation.runtime.config import CassandraSettings, JobConfig, WriteSettings

CASSANDRA_EXTENSIONS = "com.datastax.spark.connector.CassandraSparkExtensions"


# A long-running driver keeps Spark's UI record (jobs, stages, tasks, SQL plans with their
# metrics) of past work up to these limits; Spark's defaults (1,000 jobs, stages and SQL
# executions, every DAG node) let a stream's driver heap grow for hours. Enough is kept to look
# at the last few dozen micro-batches. A value given to spark-submit (--conf) wins.
LONG_RUNNING_UI_LIMITS = {
    "spark.ui.retainedJobs": "100",
    "spark.ui.retainedStages": "100",
    "spark.ui.retainedTasks": "10000",
    "spark.sql.ui.retainedExecutions": "50",
    "spark.ui.dagGraph.retainedRootRDDs": "100",
}


# Generated code is cached by its source text, 100 classes by default: one batch of the job
# compiles nearly 100, so with 100 every micro-batch evicted and recompiled (Janino, then the JIT
# again) most of them. Not many more than the working set either: Spark inlines long and
# timestamp literals into the code, so the two classes that embed a batch's time are new in
# every batch and only fill the cache (a thousand entries grew a soak's live heap noticeably).
CODEGEN_CACHE_ENTRIES = "256"


def _under_spark_submit() -> bool:
    """True inside a Python app launched by spark-submit (its gateway is already up)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _unset_by_launcher(defaults: dict[str, str]) -> dict[str, str]:
    """The entries of ``defaults`` whose key spark-submit did not set."""
    return {k: v for k, v in defaults.items() if launcher_value(k) is None}


def spark_jars() -> list[str]:
    """Absolute paths of the connector and Kafka jars handed to Spark."""
    if os.environ.get("ER_SPARK_JARS"):
        return [j for j in os.environ["ER_SPARK_JARS"].split(",") if j]
    folder = os.environ.get("ER_SPARK_JARS_DIR")
    if not folder:
        raise FileNotFoundError(
            "the connector and Kafka jars are not known: run under spark-submit.sh, or set "
            "ER_SPARK_JARS_DIR to a folder of them (a release's jars/, or `./dev.sh jars DIR`)"
        )
    jars = sorted(str(p) for p in Path(folder).glob("*.jar"))
    if not jars:
        raise FileNotFoundError(f"no jars in ER_SPARK_JARS_DIR={folder}")
    return jars


def cassandra_conf(cassandra: CassandraSettings, write: WriteSettings) -> dict[str, str]:
    """Connector settings for the configured Cassandra (credentials and TLS only when set).

    Timeouts are bounded on purpose: with the connector's defaults (120 s per request, 60
    retries) a stopped Cassandra stalls a batch for many minutes instead of failing it.
    """
    conf = {
        "spark.cassandra.connection.host": cassandra.host,
        "spark.cassandra.connection.port": str(cassandra.port),
        "spark.cassandra.read.timeoutMS": str(cassandra.read_timeout_ms),
        "spark.cassandra.query.retry.count": str(cassandra.query_retries),
        "spark.cassandra.connection.reconnectionDelayMS.max": "10000",
        # user_enrolments updates leave unset columns (e.g. completedon) untouched
        "spark.cassandra.output.ignoreNulls": "true",
        "spark.cassandra.output.batch.size.rows": str(write.batch_size),
    }
    if cassandra.username:
        conf["spark.cassandra.auth.username"] = cassandra.username
        conf["spark.cassandra.auth.password"] = cassandra.password or ""
    if cassandra.ssl_enabled:
        conf["spark.cassandra.connection.ssl.enabled"] = "true"
        if cassandra.truststore_path:
            conf["spark.cassandra.connection.ssl.trustStore.path"] = cassandra.truststore_path
        if cassandra.truststore_password:
            conf["spark.cassandra.connection.ssl.trustStore.password"] = (
                cassandra.truststore_password
            )
    return conf


def _with_extension(launched: str | None) -> str:
    """``spark.sql.extensions`` with the connector's added to what the operator gave."""
    given = [e for e in (launched or "").split(",") if e.strip()]
    return ",".join([*given, CASSANDRA_EXTENSIONS] if CASSANDRA_EXTENSIONS not in given else given)


def build_spark_session(
    cfg: JobConfig,
    *,
    app_name: str = "enrolment-reconciliation",
    master: str | None = None,
    extra_conf: dict[str, str] | None = None,
    defaults: dict[str, str] | None = None,
) -> SparkSession:
    """Create (or reuse) the SparkSession with the connector's extension and the job's own
    Cassandra connection, and nothing else that the operator may have chosen.

    Every other setting is a default: used only where spark-submit (``--conf``, a properties
    file, ``spark-defaults.conf``) left the key unset. Shuffle partitions are left to Spark's
    adaptive execution (coalesced to ``spark.sql.adaptive.advisoryPartitionSizeInBytes``) unless
    the operator sets them. ``extra_conf`` always applies (tests).

    Example::

        spark = build_spark_session(load_config(), master="local[2]")
    """
    # Python workers must see the same packages as the driver (cassandra-driver for the writer).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    under_spark_submit = _under_spark_submit()
    builder = SparkSession.builder.appName(app_name)
    if not under_spark_submit:
        builder = builder.master(master or os.environ.get("ER_SPARK_MASTER") or "local[*]")
        builder = builder.config("spark.jars", ",".join(spark_jars()))
    chosen = {
        "spark.sql.codegen.cache.maxEntries": CODEGEN_CACHE_ENTRIES,
        "spark.sql.session.timeZone": "UTC",  # Cassandra's timestamps are UTC
        "spark.ui.showConsoleProgress": "false",  # spark-submit.sh turns it on for a terminal
        **(defaults or {}),
    }
    settings = {
        **_unset_by_launcher(chosen),
        "spark.sql.extensions": _with_extension(launcher_value("spark.sql.extensions")),
        **cassandra_conf(cfg.cassandra, cfg.write),
        **(extra_conf or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # Session-level values win over whatever an earlier getOrCreate left behind.
    for key, value in cassandra_conf(cfg.cassandra, cfg.write).items():
        spark.conf.set(key, value)
    return spark


def launcher_value(key: str) -> str | None:
    """The value spark-submit was given for ``key`` (``--conf``, a properties file,
    ``spark-defaults.conf``), if any."""
    if not _under_spark_submit():
        return None
    from pyspark import SparkConf

    from enrolment_reconciliation.runtime.jvm import attach_to_launcher_gateway

    attach_to_launcher_gateway()
    launched = SparkConf()
    return launched.get(key) if launched.contains(key) else None


FACTS = {
    "master": "spark.master",
    "deployMode": "spark.submit.deployMode",
    "appId": "spark.app.id",
    "driverMemory": "spark.driver.memory",
    "executorMemory": "spark.executor.memory",
    "executorCores": "spark.executor.cores",
    "shufflePartitions": "spark.sql.shuffle.partitions",
    "adaptive": "spark.sql.adaptive.enabled",
}


def session_facts(spark: SparkSession) -> dict[str, Any]:
    """What the running application was given (a few settings an operator checks first), and
    the driver's heap as its JVM sees it."""
    conf = spark.sparkContext.getConf()
    facts: dict[str, Any] = {
        name: spark.conf.get(key, None) if key.startswith("spark.sql.") else conf.get(key, None)
        for name, key in FACTS.items()
    }
    facts["driverHeapMb"] = driver_max_heap_bytes(spark) // 2**20
    return facts
