"""The foundation: Spark talks to the real Cassandra (connector) and Kafka (streaming)."""

from __future__ import annotations

import uuid

import pytest
from chispa import assert_df_equality
from kafka import KafkaConsumer, KafkaProducer
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, MapType, StringType, StructField, StructType

from devkit.schema import apply_schema
from enrolment_reconciliation.io.cassandra import (
    CASSANDRA_FORMAT,
    ScanFilters,
    connect,
    read_table,
    scan_enrolment_users,
)
from tests.helpers import stack_config

pytestmark = pytest.mark.integration
KEYSPACE = "er_test_connectors"


def test_spark_reads_a_cassandra_table_and_writes_a_dataframe_back(spark, tmp_path):
    cfg = stack_config(keyspace=KEYSPACE)
    cluster, session = connect(cfg.cassandra)
    apply_schema(session, KEYSPACE)
    session.execute(f"TRUNCATE {KEYSPACE}.user_enrolments", timeout=60)
    session.execute(
        f"INSERT INTO {KEYSPACE}.user_enrolments (userid, courseid, batchid, status, progress,"
        " contentstatus) VALUES ('u1', 'c1', 'b1', 1, 1, {'do_1': 2})"
    )
    schema = StructType(
        [
            StructField("userid", StringType(), False),
            StructField("courseid", StringType(), False),
            StructField("batchid", StringType(), False),
            StructField("status", IntegerType(), True),
            StructField("progress", IntegerType(), True),
            StructField("contentstatus", MapType(StringType(), IntegerType()), True),
        ]
    )
    read = read_table(spark, KEYSPACE, "user_enrolments").select(*schema.fieldNames())
    assert [tuple(r) for r in read.collect()] == [("u1", "c1", "b1", 1, 1, {"do_1": 2})]

    written = spark.createDataFrame(
        [("u2", "c1", "b1", 2, 3, {"do_1": 2, "do_2": 2}), ("u3", "c2", "b9", 0, 0, None)], schema
    )
    written.write.format(CASSANDRA_FORMAT).mode("append").options(
        keyspace=KEYSPACE, table="user_enrolments"
    ).save()
    rows = {
        r.userid: (r.courseid, r.batchid, r.status, r.progress, dict(r.contentstatus or {}))
        for r in session.execute(
            f"SELECT userid, courseid, batchid, status, progress, contentstatus"
            f" FROM {KEYSPACE}.user_enrolments"
        )
    }
    cluster.shutdown()
    assert rows == {
        "u1": ("c1", "b1", 1, 1, {"do_1": 2}),
        "u2": ("c1", "b1", 2, 3, {"do_1": 2, "do_2": 2}),
        "u3": ("c2", "b9", 0, 0, {}),
    }
    back = read_table(spark, KEYSPACE, "user_enrolments").select(*schema.fieldNames())
    expected = spark.createDataFrame(
        [("u1", "c1", "b1", 1, 1, {"do_1": 2}), *[tuple(r) for r in written.collect()]], schema
    )

    def comparable(df):  # maps cannot be sorted; an empty CQL map reads as null or {}
        entries = F.array_sort(F.map_entries("contentstatus"))
        empty = F.array().cast("array<struct<key:string,value:int>>")
        return df.withColumn("contentstatus", F.coalesce(entries, empty))

    assert_df_equality(
        comparable(back), comparable(expected), ignore_row_order=True, ignore_nullable=True
    )


def test_structured_streaming_reads_a_topic_and_writes_another(spark, tmp_path):
    cfg = stack_config()
    source, sink = f"in-{uuid.uuid4().hex[:8]}", f"out-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=cfg.kafka.broker_servers, acks="all")
    for i in range(5):
        producer.send(source, key=f"k{i}".encode(), value=f"message {i}".encode())
    producer.flush()
    producer.close()

    stream = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", cfg.kafka.broker_servers)
        .option("subscribe", source)
        .option("startingOffsets", "earliest")
        .load()
        .select(F.col("key"), F.upper(F.col("value").cast("string")).alias("value"))
    )
    query = (
        stream.writeStream.format("kafka")
        .option("kafka.bootstrap.servers", cfg.kafka.broker_servers)
        .option("topic", sink)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(300)
    assert query.exception() is None

    consumer = KafkaConsumer(
        sink,
        bootstrap_servers=cfg.kafka.broker_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        group_id=None,
    )
    got = sorted((m.key.decode(), m.value.decode()) for m in consumer)
    consumer.close()
    assert got == [(f"k{i}", f"MESSAGE {i}") for i in range(5)]


def test_the_users_pass_reads_each_user_once_with_or_without_filters(spark):
    cfg = stack_config(keyspace=KEYSPACE)
    cluster, session = connect(cfg.cassandra)
    apply_schema(session, KEYSPACE)
    session.execute(f"TRUNCATE {KEYSPACE}.user_enrolments", timeout=60)
    for user, course, batch in [
        ("u1", "c1", "b1"),
        ("u1", "c2", "b2"),
        ("u1", "c3", "b3"),
        ("u2", "c2", "b2"),
        ("u3", "c1", "b1"),
        ("u3", "c1", "b9"),
    ]:
        session.execute(
            f"INSERT INTO {KEYSPACE}.user_enrolments (userid, courseid, batchid, status,"
            " contentstatus) VALUES (%s, %s, %s, 1, {'do_1': 2, 'do_2': 1})",
            (user, course, batch),
        )
    cluster.shutdown()
    users = StructType([StructField("userid", StringType(), True)])

    def expected(*ids: str):
        return spark.createDataFrame([(u,) for u in ids], users)

    everyone = scan_enrolment_users(spark, cfg.cassandra, ScanFilters())  # PER PARTITION LIMIT 1
    assert_df_equality(
        everyone, expected("u1", "u2", "u3"), ignore_row_order=True, ignore_nullable=True
    )
    in_c1 = scan_enrolment_users(spark, cfg.cassandra, ScanFilters(courses=("c1",)))
    assert_df_equality(in_c1, expected("u1", "u3"), ignore_row_order=True, ignore_nullable=True)
