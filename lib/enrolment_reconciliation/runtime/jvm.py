"""The door to the JVM: every py4j handle the job holds is reached here and nowhere else.

The connector's Scala RDD API and its session cache, Hadoop's FileSystem, the RDD behind a
local checkpoint, the identity of the active SparkContext and the launcher's gateway are private
or Scala-side APIs that PySpark does not wrap. Keeping them in one file means a Spark or
connector upgrade is checked by reading this file; the rest of ``lib/`` only sees typed Python.
This module imports nothing of the project, so the pure core may use :func:`context_key`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pyspark import SparkContext
from pyspark.sql import DataFrame, SparkSession

if TYPE_CHECKING:
    from py4j.java_gateway import JavaObject, JVMView

CONNECTOR = "com.datastax.spark.connector"
T = TypeVar("T")


def _gateway(sc: SparkContext) -> tuple[JVMView, JavaObject]:
    """The JVM view and the JavaSparkContext of ``sc`` (a stopped context has neither)."""
    jvm, jsc = sc._jvm, sc._jsc
    if jvm is None or jsc is None:
        raise RuntimeError("the SparkContext has no JVM gateway (stopped?)")
    return jvm, jsc


def context_key() -> int:
    """Identity of the active SparkContext's JVM side (0 without one): the key of every
    per-SparkContext cache, which a new context (a restarted session) invalidates."""
    sc = SparkContext._active_spark_context
    return id(sc._jsc) if sc is not None and sc._jsc is not None else 0


def once_per_context(build: Callable[[SparkSession], T]) -> Callable[[SparkSession], T]:
    """``build(spark)`` once per SparkContext (a batch's session is a new Python object every
    micro-batch, so the session itself cannot be the key)."""
    built: dict[int, T] = {}

    @functools.wraps(build)
    def get(spark: SparkSession) -> T:
        key = context_key()
        if key not in built:
            built.clear()  # a new SparkContext: the old one's JVM objects are gone
            built[key] = build(spark)
        return built[key]

    return get


def attach_to_launcher_gateway() -> None:
    """Connect this Python process to the gateway spark-submit started (starts nothing)."""
    SparkContext._ensure_initialized()


def evict_connector_sessions(spark: SparkSession) -> None:
    """Close the connector's cached driver sessions: the next use opens a fresh one (a session
    stuck on a Cassandra that went away, or one that has not yet seen a new keyspace)."""
    jvm, _ = _gateway(spark.sparkContext)
    getattr(jvm, CONNECTOR).cql.CassandraConnector.evictCache()


def driver_max_heap_bytes(spark: SparkSession) -> int:
    """The most heap the driver's JVM may use (``-Xmx``, set from ``spark.driver.memory``)."""
    jvm, _ = _gateway(spark.sparkContext)
    return int(jvm.java.lang.Runtime.getRuntime().maxMemory())


def executor_addresses(spark: SparkSession) -> set[str]:
    """``host:port`` of every executor the driver knows now (the driver's own included)."""
    _, jsc = _gateway(spark.sparkContext)
    infos = jsc.sc().statusTracker().getExecutorInfos()
    return {f"{info.host()}:{info.port()}" for info in infos}


def java_class_names(java: Any) -> list[str]:
    """The class of a Java object (an exception from py4j) and its superclasses, by name."""
    names, cls = [], java.getClass()
    while cls is not None:
        names.append(cls.getName())
        cls = cls.getSuperclass()
    return names


def unpersist_checkpoint(df: DataFrame) -> None:
    """Free the blocks of the RDD behind a local checkpoint of ``df`` (PySpark has no API)."""
    df._jdf.queryExecution().logical().rdd().unpersist(False)


class HadoopFileSystem:
    """Hadoop's FileSystem for ``location`` (local disk, HDFS or an object store alike)."""

    def __init__(self, spark: SparkSession, location: str) -> None:
        jvm, jsc = _gateway(spark.sparkContext)
        self._path_cls = jvm.org.apache.hadoop.fs.Path
        self._fs: JavaObject = self._path_cls(location).getFileSystem(jsc.hadoopConfiguration())

    def _path(self, location: str) -> JavaObject:
        return self._path_cls(location)

    def is_file(self, location: str) -> bool:
        return bool(self._fs.isFile(self._path(location)))

    def exists(self, location: str) -> bool:
        return bool(self._fs.exists(self._path(location)))

    def mkdirs(self, location: str) -> None:
        self._fs.mkdirs(self._path(location))

    def delete(self, location: str, *, recursive: bool = False) -> bool:
        return bool(self._fs.delete(self._path(location), recursive))

    def rename(self, source: str, target: str) -> bool:
        return bool(self._fs.rename(self._path(source), self._path(target)))

    def list_names(self, location: str, *, directories: bool = False) -> list[str]:
        """Names of the entries directly under ``location`` (only folders with
        ``directories``); none if it does not exist."""
        if not self.exists(location):
            return []
        return [
            status.getPath().getName()
            for status in self._fs.listStatus(self._path(location))
            if status.isDirectory() or not directories
        ]

    def write_bytes(self, location: str, data: bytes) -> None:
        """Create (or replace) the file at ``location`` with ``data``."""
        out = self._fs.create(self._path(location), True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()


class ConnectorRddApi:
    """The connector's RDD API: ``saveToCassandra``, the only API with which the connector
    appends to a map column (``m = m + ?``) instead of replacing it, and the leanest to plan; and
    a scan with a per-partition limit, which the DataFrame API cannot push down. Build one per
    SparkContext: each py4j lookup of a class by name searches the jars."""

    def __init__(self, spark: SparkSession) -> None:
        jvm, jsc = _gateway(spark.sparkContext)
        self._jvm, self._jsc = jvm, jsc
        self._loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        self._conn = getattr(jvm, CONNECTOR)
        self._conf = jsc.sc().getConf()
        self._none = self._scala_object("scala.None")
        self._append = self._scala_object(f"{CONNECTOR}.CollectionAppend")
        self._row_writer = self._scala_object(f"{CONNECTOR}.writer.SqlRowWriter$Factory")

    def _scala_object(self, name: str) -> Any:
        cls = self._jvm.java.lang.Class.forName(name + "$", True, self._loader)
        return cls.getField("MODULE$").get(None)

    def _seq(self, items: list[Any]) -> Any:
        buffer = self._jvm.java.util.ArrayList()
        for item in items:
            buffer.add(item)
        return self._jvm.scala.collection.JavaConverters.asScalaBufferConverter(buffer).asScala()

    def columns(self, plain: Sequence[str], appended: Sequence[str] = ()) -> JavaObject:
        """A column selector: ``plain`` columns set, ``appended`` collections appended to."""
        selected = [self._conn.ColumnName(c, self._none) for c in plain]
        selected += [self._conn.CollectionColumnName(c, self._none, self._append) for c in appended]
        return self._conn.SomeColumns(self._seq(selected))

    def partition_keys(
        self, spark: SparkSession, keyspace: str, table: str, column: str
    ) -> DataFrame:
        """One row per partition of a table keyed by the text ``column`` alone: that column of
        each partition's first row (CQL ``PER PARTITION LIMIT 1``), so Cassandra returns one row
        per partition instead of all of them and Spark needs no ``distinct``. The connector's
        DataFrame API has no way to push that limit down; its Java RDD API has."""
        japi = self._conn.japi.CassandraJavaUtil
        gateway = spark.sparkContext._gateway
        if gateway is None:
            raise RuntimeError("the SparkContext has no JVM gateway (stopped?)")
        selected = gateway.new_array(self._jvm.java.lang.String, 1)
        selected[0] = column
        strings = japi.mapColumnTo(self._jvm.java.lang.Class.forName("java.lang.String"))
        first_rows = (
            japi.javaFunctions(self._jsc)
            .cassandraTable(keyspace, table, strings)
            .select(selected)
            .perPartitionLimit(self._jvm.java.lang.Long(1))
        )
        keys = spark._jsparkSession.createDataset(
            first_rows.rdd(), self._jvm.org.apache.spark.sql.Encoders.STRING()
        )
        return DataFrame(keys.toDF(), spark).withColumnRenamed("value", column)

    def save(
        self,
        rows: DataFrame,
        keyspace: str,
        table: str,
        columns: JavaObject,
        options: dict[str, str],
    ) -> None:
        """``saveToCassandra`` of ``rows`` (whose columns are those of ``columns``), with the
        session's connector settings overridden by ``options``."""
        conf = self._conf.clone()
        for key, value in options.items():
            conf.set(key, value)
        self._conn.RDDFunctions(rows._jdf.rdd()).saveToCassandra(
            keyspace,
            table,
            columns,
            self._conn.writer.WriteConf.fromSparkConf(conf),
            self._conn.cql.CassandraConnector.apply(conf),
            self._row_writer,
        )
