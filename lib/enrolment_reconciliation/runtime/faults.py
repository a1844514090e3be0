"""The one judgement of a fault: infrastructure (retried, exit 4) or a defect (never retried,
exit 1).

Every retry (a backfill slice, a stream query restart) and every exit code asks this module.
A store or service that cannot be reached, a call that timed out, an executor lost while the
work ran: an infrastructure fault, worth another attempt, and a scheduler may try the run again.
Anything else (a bug, a bad setting that slipped through): a defect, which another attempt would
only repeat; it fails at once with a message that says what broke.

Faults are told apart by type, not by message text. Each I/O client raises its own types: the
Python clients' (cassandra-driver, redis, kafka-python, requests, the OS's network errors), ours
(:class:`InfrastructureError`, e.g. the search client's or the watchdog's), and the JVM's, which
reach Python as a py4j error whose Java cause chain names the connector's or Kafka's exception
class (or one of its superclasses). A lost executor leaves no such type behind (Spark reports it
as text in a generic ``SparkException``), so :class:`AttemptWatch` asks Spark which executors
went away while an attempt ran.

Example::

    watch = AttemptWatch(spark)
    try:
        work()
    except Exception as error:
        retry = watch.is_infrastructure(error)
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pyspark.sql import SparkSession

from enrolment_reconciliation.runtime.jvm import executor_addresses, java_class_names


class InfrastructureError(RuntimeError):
    """A store or service the job needs could not be reached (never a data problem)."""


# The JVM's "could not reach": the Java driver under the connector, the JDK, Kafka's clients.
JVM_FAULT_CLASSES = frozenset(
    {
        "com.datastax.oss.driver.api.core.AllNodesFailedException",
        "com.datastax.oss.driver.api.core.NoNodeAvailableException",
        "com.datastax.oss.driver.api.core.DriverTimeoutException",
        "com.datastax.oss.driver.api.core.connection.ConnectionInitException",
        "com.datastax.oss.driver.api.core.connection.ClosedConnectionException",
        "com.datastax.oss.driver.api.core.servererrors.ReadTimeoutException",
        "com.datastax.oss.driver.api.core.servererrors.WriteTimeoutException",
        "com.datastax.oss.driver.api.core.servererrors.UnavailableException",
        "com.datastax.oss.driver.api.core.connection.HeartbeatException",
        "com.datastax.oss.driver.api.core.connection.BusyConnectionException",
        "com.datastax.oss.driver.api.core.servererrors.OverloadedException",
        "com.datastax.oss.driver.api.core.servererrors.BootstrappingException",
        "java.net.ConnectException",
        "java.net.SocketTimeoutException",
        "java.net.UnknownHostException",
        "java.nio.channels.ClosedChannelException",
        # Kafka's clients mark every error worth retrying by this superclass
        "org.apache.kafka.common.errors.RetriableException",
        "org.apache.kafka.common.errors.TimeoutException",
        "org.apache.kafka.common.errors.NetworkException",
        # Hadoop's: a NameNode or DataNode that cannot be reached (state on hdfs://)
        "org.apache.hadoop.ipc.RetriableException",
        "org.apache.hadoop.hdfs.BlockMissingException",
    }
)


@cache
def _python_fault_types() -> tuple[type[BaseException], ...]:
    """The Python clients' own exception types for a server that cannot be reached."""
    import cassandra
    import cassandra.cluster
    import kafka.errors
    import redis.exceptions
    import requests.exceptions

    return (
        InfrastructureError,
        ConnectionError,  # the OS's: refused, reset, aborted
        TimeoutError,
        cassandra.cluster.NoHostAvailable,
        cassandra.OperationTimedOut,
        cassandra.Unavailable,
        cassandra.ReadTimeout,
        cassandra.WriteTimeout,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        kafka.errors.NoBrokersAvailable,
        kafka.errors.KafkaTimeoutError,
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
    )


def _java_chain_has_fault(java: Any, depth: int = 20) -> bool:
    while java is not None and depth > 0:
        if any(name in JVM_FAULT_CLASSES for name in java_class_names(java)):
            return True
        java, depth = java.getCause(), depth - 1
    return False


def is_infrastructure_fault(error: BaseException) -> bool:
    """Whether ``error``, or anything it was raised from, is a store or service unreachable."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _python_fault_types()):
            return True
        # py4j's error, or PySpark's captured one, keeps the Java exception
        java = getattr(current, "java_exception", None) or getattr(current, "_origin", None)
        if java is not None and _java_chain_has_fault(java):
            return True
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return False


class AttemptWatch:
    """Judges the failure of one attempt of some Spark work: an infrastructure fault by type, or
    an executor that went away while the attempt ran (its rows, shuffle files and local
    checkpoints went with it)."""

    def __init__(self, spark: SparkSession) -> None:
        self._spark = spark
        self._before = self._executors()

    def _executors(self) -> set[str]:
        try:
            return executor_addresses(self._spark)
        except Exception:  # a stopped context: no executor to lose
            return set()

    def lost_executors(self) -> set[str]:
        """The executors (host:port) that were there when the attempt began and are gone."""
        return self._before - self._executors()

    def is_infrastructure(self, error: BaseException) -> bool:
        return is_infrastructure_fault(error) or bool(self.lost_executors())
