"""Hadoop's FileSystem from PySpark: paths on local disk, HDFS or an object store alike, so the
outbox and reports can live next to the checkpoint when the job runs on a cluster. The
FileSystem itself is reached through the JVM door (:class:`~enrolment_reconciliation.runtime.jvm.
HadoopFileSystem`); this module holds what callers add to it."""

from __future__ import annotations

from pyspark.sql import SparkSession

from enrolment_reconciliation.runtime.jvm import HadoopFileSystem

__all__ = ["HadoopFileSystem", "join", "write_text"]


def join(location: str, name: str) -> str:
    """``location/name`` for a local path or a URI alike (``pathlib`` would turn ``hdfs://nn/d``
    into ``hdfs:/nn/d``)."""
    return f"{location.rstrip('/')}/{name}"


def write_text(spark: SparkSession, location: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``location`` through the FileSystem of its scheme."""
    HadoopFileSystem(spark, location).write_bytes(location, text.encode())
