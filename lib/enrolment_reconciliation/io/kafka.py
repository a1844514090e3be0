"""Kafka I/O through Spark's Kafka source and sink (the sync-request stream, event topics)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

if TYPE_CHECKING:
    from enrolment_reconciliation.config import JobConfig


def kafka_options(cfg: JobConfig) -> dict[str, str]:
    """Connection options for Spark's Kafka source and sink (SASL only when credentials set)."""
    options = {"kafka.bootstrap.servers": cfg.kafka_broker_servers}
    creds = cfg.credentials
    if creds.kafka_sasl_username:
        jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{creds.kafka_sasl_username}" password="{creds.kafka_sasl_password or ""}";'
        )
        options.update(
            {
                "kafka.security.protocol": "SASL_SSL",
                "kafka.sasl.mechanism": "PLAIN",
                "kafka.sasl.jaas.config": jaas,
            }
        )
    return options


def read_sync_request_stream(spark: SparkSession, cfg: JobConfig) -> DataFrame:
    """The sync-request topic as a stream of (value, topic, partition, offset).

    ``kafka.groupId`` names the consumer group as far as Spark allows: offsets live in the
    checkpoint (Spark never commits them to Kafka), but brokers, ACLs and tooling see the group.
    """
    reader = (
        spark.readStream.format("kafka")
        .options(**kafka_options(cfg))
        .option("subscribe", cfg.input_topic)
        .option("startingOffsets", cfg.starting_offsets)
        .option("kafka.group.id", cfg.group_id)
        .option("failOnDataLoss", "false")
        .option("kafka.isolation.level", "read_committed")
    )
    if cfg.max_offsets_per_trigger > 0:
        reader = reader.option("maxOffsetsPerTrigger", str(cfg.max_offsets_per_trigger))
    return reader.load().select("value", "topic", "partition", "offset")


def write_to_topic(values: DataFrame, topic: str, cfg: JobConfig) -> None:
    """Publish the ``value`` column (JSON strings) to ``topic`` with Spark's Kafka sink.

    No record key, as the original job (spec.md §6).
    """
    (
        values.select(F.col("value").cast("string").alias("value"))
        .write.format("kafka")
        .options(**kafka_options(cfg))
        .option("topic", topic)
        .option("kafka.acks", "all")
        .save()
    )
