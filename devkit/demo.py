"""The README's run command, step by step: prepare sample data and requests, then summarise.

python -m devkit.demo prepare [--config ...] [--set k=v]   load sample data, publish requests
python -m devkit.demo summary [--config ...] [--since MS]   what the job changed and emitted
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections import Counter

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from devkit.sample.data import generate_sample
from devkit.sample.loader import load_sample
from devkit.stack import messages_on, sync_request
from enrolment_reconciliation.io.cassandra import connect
from enrolment_reconciliation.runtime.config import JobConfig, add_config_arguments, load_config

BAD_MESSAGES = [
    b"this is not JSON",
    json.dumps(
        {
            "edata": {
                "action": "user-enrolment-sync",
                "userId": 42,
                "courseId": "do_x",
                "batchId": "1",
            }
        }
    ).encode(),
    json.dumps(
        {"edata": {"action": "user-enrolment-sync", "userId": "u", "courseId": ""}}
    ).encode(),
]


def ensure_topics(cfg: JobConfig) -> None:
    admin = KafkaAdminClient(bootstrap_servers=cfg.kafka.broker_servers)
    try:
        for topic in (
            cfg.kafka.input_topic,
            cfg.kafka.failed_topic,
            cfg.kafka.audit_topic,
            cfg.kafka.certissue_topic,
        ):
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        admin.close()


def prepare(cfg: JobConfig, seed: int, courses: int, users: int) -> None:
    sample = generate_sample(seed=seed, courses=courses, users=users)
    counts = load_sample(sample, cfg, truncate=True)
    ensure_topics(cfg)
    producer = KafkaProducer(bootstrap_servers=cfg.kafka.broker_servers, acks="all")
    requests = 0
    for enrolment in sample.enrolments():
        request = sync_request(*enrolment[:3]).encode()
        producer.send(cfg.kafka.input_topic, request, key=enrolment[0].encode())
        requests += 1
    for message in BAD_MESSAGES:
        producer.send(cfg.kafka.input_topic, message)
    producer.flush()
    producer.close()
    print(
        f"Loaded {counts['enrolments']} enrolments, {counts['consumption']} consumption rows and "
        f"{counts['relation_cache_keys']} relation-cache keys; published {requests} sync "
        f"requests and {len(BAD_MESSAGES)} bad messages to {cfg.kafka.input_topic}."
    )


def summary(cfg: JobConfig, since_ms: int) -> None:
    cluster, session = connect(cfg.cassandra, keyspace=cfg.cassandra.keyspace)
    try:
        rows = session.execute(f"SELECT status, datetime FROM {cfg.cassandra.enrolments_table}")
        touched = Counter(
            r.status
            for r in rows
            if r.datetime and r.datetime.timestamp() * 1000 >= since_ms - 1000
        )
    finally:
        cluster.shutdown()

    def this_run(events: list[dict]) -> list[dict]:
        return [e for e in events if e.get("ets", 0) >= since_ms - 1000]

    audit = this_run(messages_on(cfg, cfg.kafka.audit_topic))
    certs = this_run(messages_on(cfg, cfg.kafka.certissue_topic))
    failed = messages_on(cfg, cfg.kafka.failed_topic)
    print("\n=== enrolment-reconciliation: summary ===")
    print(
        f"enrolments updated: {sum(touched.values())} "
        f"(in progress: {touched.get(1, 0)}, completed: {touched.get(2, 0)})"
    )
    print(f"AUDIT enrol-complete events: {len(audit)} on {cfg.kafka.audit_topic}")
    print(f"certificate requests: {len(certs)} on {cfg.kafka.certissue_topic}")
    print(f"failed events: {len(failed)} on {cfg.kafka.failed_topic}")
    for reason, n in Counter(f["reason"] for f in failed).most_common():
        print(f"  {n} x {reason}")


def main() -> None:
    parser = add_config_arguments(argparse.ArgumentParser(description=__doc__))
    parser.add_argument("step", choices=["prepare", "summary"])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--courses", type=int, default=5)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--since", type=int, default=0, help="epoch ms the job run started")
    args = parser.parse_args()
    cfg = load_config(args.config, env=args.env, overrides=args.overrides)
    if args.step == "prepare":
        prepare(cfg, args.seed, args.courses, args.users)
    else:
        summary(cfg, args.since)


if __name__ == "__main__":
    main()
