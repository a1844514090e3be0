"""Kafka I/O through Spark's Kafka source and sink (the sync-request stream, event topics)."""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

if TYPE_CHECKING:
    from enrolment_reconciliation.runtime.config import KafkaSettings, StreamSettings

log = logging.getLogger(__name__)
_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def kafka_options(kafka: KafkaSettings) -> dict[str, str]:
    """Connection options for Spark's Kafka source and sink.

    ``kafka.security.protocol`` passes through; with SASL the JAAS line is built from
    ``KAFKA_SASL_USERNAME``/``KAFKA_SASL_PASSWORD`` (never from the file), and with SSL the
    truststore comes from ``kafka.ssl.truststore.location`` and ``KAFKA_TRUSTSTORE_PASSWORD``.
    """
    options = {"kafka.bootstrap.servers": kafka.broker_servers}
    protocol = kafka.security_protocol
    if kafka.sasl_username and protocol == "PLAINTEXT":
        protocol = "SASL_SSL"  # credentials without a protocol: the safe one
    if protocol != "PLAINTEXT":
        options["kafka.security.protocol"] = protocol
    if protocol.startswith("SASL"):
        module = _LOGIN_MODULES.get(kafka.sasl_mechanism, _LOGIN_MODULES["PLAIN"])
        options["kafka.sasl.mechanism"] = kafka.sasl_mechanism
        options["kafka.sasl.jaas.config"] = (
            f"{module} required username={_jaas_quote(kafka.sasl_username or '')}"
            f" password={_jaas_quote(kafka.sasl_password or '')};"
        )
    if protocol in ("SSL", "SASL_SSL") and kafka.truststore_location:
        options["kafka.ssl.truststore.location"] = kafka.truststore_location
        if kafka.truststore_password:
            options["kafka.ssl.truststore.password"] = kafka.truststore_password
    return options


def python_client_options(kafka: KafkaSettings) -> dict[str, str]:
    """The same connection for kafka-python's clients (a caller without Spark). A JKS
    truststore cannot be read by them: with SSL they trust the system's CAs."""
    spark_side = kafka_options(kafka)
    options = {"bootstrap_servers": kafka.broker_servers}
    protocol = spark_side.get("kafka.security.protocol")
    if protocol:
        options["security_protocol"] = protocol
    if protocol and protocol.startswith("SASL"):
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username or ""
        options["sasl_plain_password"] = kafka.sasl_password or ""
    return options


class GroupOffsets:
    """Commits the stream's progress to ``kafka.groupId``, for monitoring only.

    Spark's Kafka source keeps its offsets in the checkpoint and never commits them to Kafka, so
    consumer-group tools (``kafka-consumer-groups``, kafka-exporter, Burrow) would see no lag.
    After each micro-batch the stream commits the batch's end offsets here; the checkpoint stays
    the truth, and nothing reads these offsets back. A failed commit is logged, never raised:
    monitoring must not stop the stream.
    """

    def __init__(self, kafka: KafkaSettings) -> None:
        self._options = python_client_options(kafka)
        self._group = kafka.group_id
        self._consumer: Any = None

    def commit(self, end_offsets: dict[str, dict[str, int]]) -> bool:
        """Commit ``{topic: {partition: next offset}}``; whether it was committed."""
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        offsets = {
            TopicPartition(topic, int(partition)): OffsetAndMetadata(int(offset), "", -1)
            for topic, partitions in end_offsets.items()
            for partition, offset in partitions.items()
        }
        if not offsets:
            return False
        try:
            if self._consumer is None:
                from kafka import KafkaConsumer

                self._consumer = KafkaConsumer(
                    group_id=self._group, enable_auto_commit=False, **self._options
                )
            self._consumer.commit(offsets)
            return True
        except Exception as error:  # monitoring only: the checkpoint is the truth
            log.warning(
                "committing the stream's offsets to group %s failed: %s", self._group, error
            )
            return False

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def read_sync_request_stream(
    spark: SparkSession, kafka: KafkaSettings, stream: StreamSettings
) -> DataFrame:
    """The sync-request topic as a stream of (value, topic, partition, offset).

    ``kafka.groupId`` names the consumer group: offsets live in the checkpoint (Spark never
    commits them to Kafka); the stream commits each batch's end offsets to the group for
    monitoring (:class:`GroupOffsets`).
    """
    reader = (
        spark.readStream.format("kafka")
        .options(**kafka_options(kafka))
        .option("subscribe", kafka.input_topic)
        .option("startingOffsets", stream.starting_offsets)
        .option("kafka.group.id", kafka.group_id)
        .option("failOnDataLoss", "false")
        .option("kafka.isolation.level", "read_committed")
        .option("kafka.fetch.max.wait.ms", str(kafka.fetch_max_wait_ms))
    )
    if stream.max_offsets_per_trigger > 0:
        reader = reader.option("maxOffsetsPerTrigger", str(stream.max_offsets_per_trigger))
    return reader.load().select("value", "topic", "partition", "offset")


def write_to_topics(messages: DataFrame, kafka: KafkaSettings) -> None:
    """Publish ``value`` (JSON strings) to each row's ``topic`` with Spark's Kafka sink, in one
    Spark job. No record key, as the original job (docs/behaviour.md §6)."""
    (
        messages.select(F.col("topic"), F.col("value").cast("string").alias("value"))
        .write.format("kafka")
        .options(**kafka_options(kafka))
        .option("kafka.acks", "all")
        .save()
    )


def can_publish_from_driver(kafka: KafkaSettings) -> bool:
    """Whether kafka-python on the driver reaches the brokers as Spark's sink does (it cannot
    read a JKS truststore)."""
    return not kafka.truststore_location


class DriverPublisher:
    """A few messages published from the driver by one long-lived kafka-python producer
    (``acks=all``): no Spark job, for a micro-batch's handful of completion events."""

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _producers: ClassVar[dict[tuple[str, ...], Any]] = {}

    def __init__(self, kafka: KafkaSettings) -> None:
        self._options = python_client_options(kafka)
        self._key = tuple(sorted(f"{k}={v}" for k, v in self._options.items()))

    def _producer(self) -> Any:
        with self._lock:
            producer = self._producers.get(self._key)
            if producer is None:
                from kafka import KafkaProducer

                producer = KafkaProducer(
                    **self._options, acks="all", retries=5, linger_ms=0, request_timeout_ms=30000
                )
                self._producers[self._key] = producer
            return producer

    def send(self, messages: Iterable[tuple[str, str]], timeout: float = 60.0) -> int:
        """Publish ``(topic, value)`` pairs and wait for every acknowledgement (an error
        raises: the batch fails and runs again, its mids the same)."""
        producer = self._producer()
        futures = [producer.send(topic, value.encode()) for topic, value in messages]
        producer.flush(timeout=timeout)
        for future in futures:
            future.get(timeout=timeout)
        return len(futures)

    @classmethod
    def close_all(cls) -> None:
        with cls._lock:
            for producer in cls._producers.values():
                producer.close(timeout=10)
            cls._producers.clear()


atexit.register(DriverPublisher.close_all)
