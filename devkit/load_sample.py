"""Generate a deterministic sample and load it into Cassandra and the Redis relation cache.

Usage::

    python -m devkit.load_sample --seed 42 --courses 5 --users 1000 --truncate \\
        --set lms-cassandra.keyspace=er_bench
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from devkit.sample.data import generate_sample
from devkit.sample.loader import load_sample
from enrolment_reconciliation.runtime.config import add_config_arguments, load_config


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = add_config_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--courses", type=int, default=5)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--batches-per-course", type=int, default=2)
    parser.add_argument(
        "--truncate",
        action="store_true",
        help="empty the three tables and the relation-cache Redis db first",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, env=args.env, overrides=args.overrides)
    sample = generate_sample(
        seed=args.seed,
        courses=args.courses,
        users=args.users,
        batches_per_course=args.batches_per_course,
    )
    started = time.monotonic()
    counts = load_sample(sample, cfg, truncate=args.truncate)
    elapsed = time.monotonic() - started
    keyspace = cfg.cassandra.keyspace
    print(
        f"Loaded sample seed={args.seed}: {counts['courses']} courses, {counts['users']} users, "
        f"{counts['enrolments']} enrolments into {keyspace}.{cfg.cassandra.enrolments_table}, "
        f"{counts['consumption']} consumption rows into"
        f" {keyspace}.{cfg.cassandra.consumption_table}, "
        f"{counts['relation_cache_keys']} relation-cache keys into Redis "
        f"{cfg.redis.host}:{cfg.redis.port} db {cfg.redis.relation_cache_db}"
        f"{' (truncated first)' if args.truncate else ''}, in {elapsed:.1f}s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
