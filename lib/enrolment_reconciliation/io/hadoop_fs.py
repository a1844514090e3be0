"""Hadoop's FileSystem from PySpark: paths on local disk, HDFS or an object store alike, so the
outbox and reports can live next to the checkpoint when the job runs on a cluster."""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession


class HadoopFS:
    """The FileSystem of ``location`` and a maker of its paths (py4j objects)."""

    def __init__(self, spark: SparkSession, location: str) -> None:
        jvm, jsc = spark.sparkContext._jvm, spark.sparkContext._jsc
        if jvm is None or jsc is None:
            raise RuntimeError("the SparkContext has no JVM gateway (stopped?)")
        self._path_cls = jvm.org.apache.hadoop.fs.Path
        self.fs: Any = self._path_cls(location).getFileSystem(jsc.hadoopConfiguration())

    def path(self, location: str) -> Any:
        return self._path_cls(location)

    def is_file(self, location: str) -> bool:
        return bool(self.fs.isFile(self.path(location)))

    def mkdirs(self, location: str) -> None:
        self.fs.mkdirs(self.path(location))

    def write_bytes(self, location: str, data: bytes) -> None:
        """Create (or replace) the file at ``location`` with ``data``."""
        out = self.fs.create(self.path(location), True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()


def join(location: str, name: str) -> str:
    """``location/name`` for a local path or a URI alike (``pathlib`` would turn ``hdfs://nn/d``
    into ``hdfs:/nn/d``)."""
    return f"{location.rstrip('/')}/{name}"


def write_text(spark: SparkSession, location: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``location`` through the FileSystem of its scheme."""
    HadoopFS(spark, location).write_bytes(location, text.encode())
