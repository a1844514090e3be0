"""The local stack (``stack/stack.sh``) as the demo, tests and benchmarks reach it.

``stack.sh start`` writes the ports it really uses to ``$STACK_DIR/stack.env``; these helpers
turn that file into ``--set`` overrides and a :class:`JobConfig`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from enrolment_reconciliation.config import JobConfig, load_config
from enrolment_reconciliation.schemas import SYNC_ACTION

PROJECT_ROOT = Path(__file__).resolve().parents[3]
STACK_ENV = Path(os.environ.get("STACK_DIR", PROJECT_ROOT / ".stack")) / "stack.env"


def stack_settings() -> dict[str, str]:
    """Host/port settings written by `stack/stack.sh start` (defaults if absent)."""
    settings = {
        "CASSANDRA_HOST": "127.0.0.1",
        "CASSANDRA_PORT": "9042",
        "KAFKA_BOOTSTRAP": "127.0.0.1:9092",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": "6379",
    }
    if STACK_ENV.is_file():
        for line in STACK_ENV.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() in settings:
                settings[key.strip()] = value.strip().strip('"')
    return settings


def export_stack_credentials(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Put the local stack's generated credentials (``.stack/secrets.env``) into the environment,
    where the job reads them, unless already set. Returns the names set (never the values)."""
    environ = os.environ if environ is None else environ
    secrets = STACK_ENV.with_name("secrets.env")
    names = []
    if secrets.is_file():
        for line in secrets.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#") and key.strip() not in environ:
                environ[key.strip()] = value.strip()
                names.append(key.strip())
    return names


def stack_overrides(keyspace: str | None = None) -> list[str]:
    """``--set`` overrides pointing the job at the local stack (and a keyspace)."""
    s = stack_settings()
    overrides = [
        f"lms-cassandra.host={s['CASSANDRA_HOST']}",
        f"lms-cassandra.port={s['CASSANDRA_PORT']}",
        f"kafka.broker-servers={s['KAFKA_BOOTSTRAP']}",
        f"redis.host={s['REDIS_HOST']}",
        f"redis.port={s['REDIS_PORT']}",
    ]
    if keyspace:
        overrides.append(f"lms-cassandra.keyspace={keyspace}")
    return overrides


def stack_config(*overrides: str, keyspace: str | None = None, env: str | None = None) -> JobConfig:
    """The job's config pointed at the local stack."""
    return load_config(env=env, overrides=[*stack_overrides(keyspace), *overrides])


def sync_request(
    user: Any, course: Any, batch: Any, action: str = SYNC_ACTION, *, ets: int | None = None
) -> str:
    """A sync request as lms-service publishes it (spec.md §1.2)."""
    ets = int(time.time() * 1000) if ets is None else ets
    return json.dumps(
        {
            "eid": "BE_JOB_REQUEST",
            "ets": ets,
            "mid": f"LP.{ets}.{user}",
            "actor": {"type": "System", "id": "Course Batch Updater"},
            "context": {"pdata": {"ver": "1.0", "id": "org.sunbird.platform"}},
            "object": {"type": "CourseBatchEnrolment", "id": f"{batch}_{user}"},
            "edata": {
                "action": action,
                "iteration": 1,
                "batchId": batch,
                "userId": user,
                "courseId": course,
            },
        }
    )
