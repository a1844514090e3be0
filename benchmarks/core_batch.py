"""Benchmark: reconcile_batch on N sync requests (default 1,000 over 100 courses), real stack.

Prints the physical plan of the consumption join, the time of the batch function (reads through
the connector and Redis, the core, counters; no writes) on a cold and a warm relation cache, and
the same requests done the original job's way (one consumption read and one Redis call per key
per request, from Python) for a ratio measured in the same run.

    .venv/bin/python benchmarks/core_batch.py [--requests 1000] [--courses 100]
"""

from __future__ import annotations

import argparse
import time

import redis

from enrolment_reconciliation.inputs import read_requested
from enrolment_reconciliation.io.cassandra import connect_from_config, read_consumption_for
from enrolment_reconciliation.io.relation_cache import RelationCacheReader
from enrolment_reconciliation.io.search import CollectionStatusClient
from enrolment_reconciliation.pipeline import BatchResources, reconcile_batch
from enrolment_reconciliation.sample.data import generate_sample
from enrolment_reconciliation.sample.loader import load_sample
from enrolment_reconciliation.sample.stack import stack_config, sync_request
from enrolment_reconciliation.schemas import ENROLMENT_KEY_SCHEMA, RAW_REQUEST_SCHEMA
from enrolment_reconciliation.spark import build_spark_session

KEYSPACE, REDIS_DB = "er_bench", 15


def per_request_baseline(cfg, keys) -> float:
    """The original access pattern: per request one CQL read, one SMEMBERS per key."""
    cluster, session = connect_from_config(cfg, keyspace=cfg.keyspace)
    client = redis.Redis(host=cfg.redis_host, port=cfg.redis_port, db=REDIS_DB)
    stmt = session.prepare(
        "SELECT contentid, status FROM user_content_consumption"
        " WHERE userid = ? AND courseid = ? AND batchid = ?"
    )
    started = time.perf_counter()
    for user, course, batch in keys:
        rows = list(session.execute(stmt, (user, course, batch)))
        if not rows:
            continue
        done = {r.contentid for r in rows if (r.status or 1) == 2}
        leaves = client.smembers(f"{course}:{course}:leafnodes")
        optional = client.smembers(f"{course}:{course}:optionalnodes")
        _ = len({x.decode() for x in leaves - optional} & done)
        units = set()
        for r in rows:
            units |= {u.decode() for u in client.smembers(f"{course}:{r.contentid}:ancestors")}
        for unit in units - {course}:
            leaves = client.smembers(f"{course}:{unit}:leafnodes")
            optional = client.smembers(f"{course}:{unit}:optionalnodes")
            _ = len({x.decode() for x in leaves - optional} & done)
        session.execute(
            "SELECT status FROM user_enrolments WHERE userid=%s AND courseid=%s AND batchid=%s",
            (user, course, batch),
        )
    elapsed = time.perf_counter() - started
    cluster.shutdown()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--courses", type=int, default=100)
    args = parser.parse_args()
    cfg = stack_config(f"redis.database.relationCache.id={REDIS_DB}", keyspace=KEYSPACE)
    users = max(1, args.requests // 2)
    sample = generate_sample(seed=3, courses=args.courses, users=users, courses_per_user=(1, 3))
    load_sample(sample, cfg, truncate=True)
    keys = sorted({(e.userid, e.courseid, e.batchid) for e in sample.enrolments()})
    keys = keys[: args.requests]
    print(f"{len(keys)} requests over {len({k[1] for k in keys})} courses")

    spark = build_spark_session(cfg, master="local[2]", extra_conf={"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("WARN")
    key_df = spark.createDataFrame(keys, ENROLMENT_KEY_SCHEMA)
    print("\nPhysical plan of the consumption read:")
    read_consumption_for(spark, key_df, cfg).explain()

    rows = [(sync_request(*k).encode(), "bench", 0, i) for i, k in enumerate(keys)]
    raw = spark.createDataFrame(rows, RAW_REQUEST_SCHEMA).cache()
    raw.count()
    search = CollectionStatusClient("http://127.0.0.1:9/none")
    resources = BatchResources(RelationCacheReader.from_config(cfg), search)
    timings = []
    for label in ("cold relation cache", "warm relation cache", "warm relation cache"):
        started = time.perf_counter()
        result = reconcile_batch(spark, read_requested(spark, raw, cfg), cfg, resources)
        elapsed = time.perf_counter() - started
        timings.append(elapsed)
        print(
            f"reconcile_batch, {label}: {elapsed:.2f} s "
            f"({result.counters['aggregates.activity-agg-rows-count']} aggregate rows, "
            f"{result.counters['enrolment.enrolment-update-count']} enrolment updates, "
            f"{result.counters['relation-cache.redis-read-count']} Redis reads)"
        )
        result.release()
    baseline = per_request_baseline(cfg, keys)
    print(f"per-request baseline (original access pattern, reads only): {baseline:.2f} s")
    print(f"ratio baseline / warm reconcile_batch: {baseline / min(timings[1:]):.2f}x")
    spark.stop()


if __name__ == "__main__":
    main()
