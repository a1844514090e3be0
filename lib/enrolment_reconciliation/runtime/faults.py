"""Infrastructure faults, told apart from every other error by type, not by message text.

A store or service that cannot be reached stops a backfill with exit 4 (resumable) and fails a
stream micro-batch (retried); anything else is a defect (exit 1). Each I/O client raises its own
types: the Python clients' (cassandra-driver, redis, kafka-python, requests), ours
(:class:`InfrastructureError`, e.g. the search client's), and the JVM's, which reach Python as a
py4j error whose Java cause chain names the connector's or Kafka's exception class.

Example::

    try:
        run_backfill(spark, cfg, options)
    except Exception as error:
        code = 4 if is_infrastructure_fault(error) else 1
"""

from __future__ import annotations

from functools import cache
from typing import Any


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
        "java.net.ConnectException",
        "java.net.SocketTimeoutException",
        "java.nio.channels.ClosedChannelException",
        "org.apache.kafka.common.errors.TimeoutException",
        "org.apache.kafka.common.errors.NetworkException",
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
        if java.getClass().getName() in JVM_FAULT_CLASSES:
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
