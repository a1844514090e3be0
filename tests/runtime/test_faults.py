"""Infrastructure faults are told apart by type: the Python clients', ours, the JVM's."""

from __future__ import annotations

import pytest
import redis
from cassandra.cluster import NoHostAvailable
from py4j.protocol import Py4JJavaError

from enrolment_reconciliation.io.search import SearchServiceError
from enrolment_reconciliation.runtime import faults
from enrolment_reconciliation.runtime.faults import AttemptWatch, is_infrastructure_fault
from enrolment_reconciliation.runtime.jvm import java_class_names


def raised_from(cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise RuntimeError("the batch failed") from inner
    except RuntimeError as outer:
        return outer


def test_python_clients_and_our_own_faults_count_also_as_causes():
    faults = [
        NoHostAvailable("no host", {}),
        redis.ConnectionError("refused"),
        SearchServiceError("search service answered 503"),
    ]
    for fault in faults:
        assert is_infrastructure_fault(fault), fault
        assert is_infrastructure_fault(raised_from(fault)), fault
    # a message that merely mentions a connection is not a fault
    for other in (ValueError("ConnectionError in the text"), KeyError("NoHostAvailable")):
        assert not is_infrastructure_fault(other)
        assert not is_infrastructure_fault(raised_from(other))


def test_the_jvm_s_faults_are_found_in_the_java_cause_chain(spark):
    jvm = spark.sparkContext._jvm
    with pytest.raises(Py4JJavaError) as refused:
        jvm.java.net.Socket("127.0.0.1", 9)  # nothing listens on the discard port
    assert is_infrastructure_fault(refused.value)
    assert is_infrastructure_fault(raised_from(refused.value))
    # PySpark turns this one into its own captured exception, which keeps the Java one
    with pytest.raises(Exception) as defect:
        jvm.java.lang.Integer.parseInt("not a number")
    assert getattr(defect.value, "_origin", None) is not None
    assert not is_infrastructure_fault(defect.value)


def test_the_os_s_network_errors_count_and_a_class_counts_by_its_superclasses(spark):
    assert is_infrastructure_fault(ConnectionRefusedError(111, "refused"))
    assert is_infrastructure_fault(raised_from(TimeoutError("timed out")))
    jvm = spark.sparkContext._jvm
    names = java_class_names(jvm.java.net.ConnectException("refused"))
    assert names[:3] == [
        "java.net.ConnectException",
        "java.net.SocketException",
        "java.io.IOException",
    ]


def test_an_attempt_that_lost_an_executor_failed_by_the_infrastructure(spark, monkeypatch):
    executors = {"10.0.0.1:40001", "10.0.0.2:40002"}
    monkeypatch.setattr(faults, "executor_addresses", lambda _: set(executors))
    watch = AttemptWatch(spark)
    assert not watch.is_infrastructure(ValueError("a bug"))  # nothing went away
    executors.discard("10.0.0.2:40002")  # SIGKILLed while the attempt ran
    assert watch.lost_executors() == {"10.0.0.2:40002"}
    assert watch.is_infrastructure(ValueError("Checkpoint block rdd_12_0 not found!"))
