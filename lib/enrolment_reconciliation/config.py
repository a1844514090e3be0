"""Job configuration: the original job's HOCON keys, read once into a frozen dataclass.

The file is HOCON as in the Sunbird job family, so an operator's existing Flink-job ``.conf``
(with the base-config connection keys) loads unchanged. ``--env`` sets the ``env`` key that fills
``${env}`` in topic and group names; ``--set key=value`` overrides any key. Credentials come only
from environment variables and are masked in ``repr`` so they never reach a log line.

Example::

    cfg = load_config("conf/enrolment-reconciliation.conf", env="prod",
                      overrides=["threshold.batch.write.size=20"])
    cfg.input_topic  # 'prod.batch.enrolment.sync.request'
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pyhocon import ConfigFactory, ConfigTree

# spark-submit.sh sets ER_CONFIG: the package then runs from a zip, away from the checkout.
DEFAULT_CONFIG_PATH = Path(
    os.environ.get(
        "ER_CONFIG",
        Path(__file__).resolve().parents[2] / "conf" / "enrolment-reconciliation.conf",
    )
)

# Environment variables holding secrets; never part of the HOCON file.
CREDENTIAL_ENV = {
    "cassandra_username": "LMS_CASSANDRA_USERNAME",
    "cassandra_password": "LMS_CASSANDRA_PASSWORD",
    "redis_password": "REDIS_PASSWORD",
    "kafka_sasl_username": "KAFKA_SASL_USERNAME",
    "kafka_sasl_password": "KAFKA_SASL_PASSWORD",
    "search_api_key": "SEARCH_API_KEY",
}


class ConfigError(ValueError):
    """A configuration key is missing or has a value of the wrong type."""


@dataclass(frozen=True)
class Credentials:
    """Secrets from the environment; ``repr`` shows only which ones are set."""

    cassandra_username: str | None = None
    cassandra_password: str | None = field(default=None, repr=False)
    redis_password: str | None = field(default=None, repr=False)
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    search_api_key: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        present = [f.name for f in fields(self) if getattr(self, f.name)]
        return f"Credentials(set={present})"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        environ = os.environ if environ is None else environ
        return cls(**{name: environ.get(var) or None for name, var in CREDENTIAL_ENV.items()})


@dataclass(frozen=True)
class JobConfig:
    """Every setting the job reads, in one immutable value built by :func:`load_config`."""

    env: str
    # Kafka
    kafka_broker_servers: str
    input_topic: str
    failed_topic: str
    audit_topic: str
    certissue_topic: str
    group_id: str
    # Cassandra
    cassandra_host: str
    cassandra_port: int
    keyspace: str
    consumption_table: str
    enrolments_table: str
    activity_agg_table: str
    # Redis
    redis_host: str
    redis_port: int
    relation_cache_db: int
    # behaviour
    write_batch_size: int
    module_aggs_enabled: bool
    filter_processed_enrolments: bool
    collection_status_cache_expiry: int
    exclude_optional_nodes: bool
    search_base_path: str
    relation_cache_ttl: int
    # streaming
    checkpoint_location: str
    trigger: str
    trigger_interval: str
    starting_offsets: str
    max_offsets_per_trigger: int
    restart_max_attempts: int
    restart_backoff_seconds: float
    # writes
    write_concurrency: int
    write_retries: int
    credentials: Credentials = field(default_factory=Credentials)

    def with_overrides(self, **changes: Any) -> JobConfig:
        """Return a copy with some fields changed (handy in notebooks and tests)."""
        return replace(self, **changes)


# (dataclass field, HOCON key(s) in order of preference, type). Alternative keys accept the
# names the original job's own resource file uses (kafka.output.audit.topic, ...).
_KEYS: tuple[tuple[str, tuple[str, ...], type], ...] = (
    ("env", ("env",), str),
    ("kafka_broker_servers", ("kafka.broker-servers",), str),
    ("input_topic", ("kafka.input.topic",), str),
    ("failed_topic", ("kafka.output.failed.topic",), str),
    ("audit_topic", ("kafka.audit.topic", "kafka.output.audit.topic"), str),
    ("certissue_topic", ("kafka.certissue.topic", "kafka.output.certissue.topic"), str),
    ("group_id", ("kafka.groupId",), str),
    ("cassandra_host", ("lms-cassandra.host",), str),
    ("cassandra_port", ("lms-cassandra.port",), int),
    ("keyspace", ("lms-cassandra.keyspace",), str),
    (
        "consumption_table",
        ("lms-cassandra.content_consumption.table", "lms-cassandra.consumption.table"),
        str,
    ),
    ("enrolments_table", ("lms-cassandra.user_enrolments.table",), str),
    ("activity_agg_table", ("lms-cassandra.user_activity_agg.table",), str),
    ("redis_host", ("redis.host",), str),
    ("redis_port", ("redis.port",), int),
    ("relation_cache_db", ("redis.database.relationCache.id",), int),
    ("write_batch_size", ("threshold.batch.write.size",), int),
    ("module_aggs_enabled", ("activity.module.aggs.enabled",), bool),
    ("filter_processed_enrolments", ("activity.filter.processed.enrolments",), bool),
    ("collection_status_cache_expiry", ("activity.collection.status.cache.expiry",), int),
    ("exclude_optional_nodes", ("activity.exclude.optional.nodes",), bool),
    ("search_base_path", ("service.search.basePath",), str),
    ("relation_cache_ttl", ("relation-cache.ttl",), int),
    ("checkpoint_location", ("stream.checkpoint.location",), str),
    ("trigger", ("stream.trigger.mode",), str),
    ("trigger_interval", ("stream.trigger.interval",), str),
    ("starting_offsets", ("stream.starting.offsets",), str),
    ("max_offsets_per_trigger", ("stream.max.offsets.per.trigger",), int),
    ("restart_max_attempts", ("stream.restart.max.attempts",), int),
    ("restart_backoff_seconds", ("stream.restart.backoff.seconds",), float),
    ("write_concurrency", ("write.concurrency",), int),
    ("write_retries", ("write.retries",), int),
)

# Defaults for keys an operator's older .conf may not have (the seed table's defaults, or ours
# for the keys this job adds). The seed-table keys without {{env}} are defaults too.
_DEFAULTS: dict[str, Any] = {
    "env": "sunbirddev",
    "kafka.broker-servers": "localhost:9092",
    "lms-cassandra.host": "localhost",
    "lms-cassandra.port": 9042,
    "lms-cassandra.keyspace": "sunbird_courses",
    "lms-cassandra.content_consumption.table": "user_content_consumption",
    "lms-cassandra.user_enrolments.table": "user_enrolments",
    "lms-cassandra.user_activity_agg.table": "user_activity_agg",
    "redis.host": "localhost",
    "redis.port": 6379,
    "redis.database.relationCache.id": 10,
    "threshold.batch.write.size": 10,
    "activity.module.aggs.enabled": True,
    "activity.filter.processed.enrolments": True,
    "activity.collection.status.cache.expiry": 3600,
    "activity.exclude.optional.nodes": True,
    "relation-cache.ttl": 300,
    "stream.checkpoint.location": "/tmp/enrolment-reconciliation/checkpoint",
    "stream.trigger.mode": "processing-time",
    "stream.trigger.interval": "10 seconds",
    "stream.starting.offsets": "earliest",
    "stream.max.offsets.per.trigger": 10000,
    "stream.restart.max.attempts": 10,
    "stream.restart.backoff.seconds": 5,
    "write.concurrency": 8,
    "write.retries": 3,
}
# Topic/group defaults are templates over env, as in the seed's table.
_ENV_TEMPLATES = {
    "kafka.input.topic": "{env}.batch.enrolment.sync.request",
    "kafka.output.failed.topic": "{env}.enrolment.reconciliation.failed",
    "kafka.audit.topic": "{env}.telemetry.raw",
    "kafka.certissue.topic": "{env}.issue.certificate.request",
    "kafka.groupId": "{env}-enrolment-reconciliation-group",
}

_BARE_LITERAL = re.compile(r"^(true|false|-?\d+(\.\d+)?)$")


def _hocon_assignment(override: str) -> str:
    """Turn ``key=value`` into a HOCON line; strings are quoted so dots and colons survive."""
    key, sep, value = override.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {override!r}")
    rendered = value if _BARE_LITERAL.match(value) else json.dumps(value)
    return f"{key} = {rendered}"


def _lookup(tree: ConfigTree, key: str) -> Any:
    try:
        return tree.get(key)
    except Exception:  # pyhocon raises several types for absent paths
        return None


def _coerce(key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).strip().lower() in ("true", "false"):
            return str(value).strip().lower() == "true"
    elif kind in (int, float):
        try:
            return kind(value)
        except (TypeError, ValueError):
            pass
    elif not isinstance(value, (dict, list, ConfigTree)):
        return str(value)
    raise ConfigError(f"config key {key!r} must be {kind.__name__}, got {value!r}")


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: str | None = None,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> JobConfig:
    """Read the HOCON file, apply ``--env`` and ``--set key=value`` overrides, add credentials.

    Overrides are appended to the HOCON text before substitutions resolve, so ``--env prod``
    (or ``--set env=prod``) re-derives every ``${env}`` topic name.
    """
    path = Path(path) if path else DEFAULT_CONFIG_PATH
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    lines = [path.read_text(encoding="utf-8")]
    if env is not None:
        lines.append(_hocon_assignment(f"env={env}"))
    lines.extend(_hocon_assignment(o) for o in overrides)
    tree = ConfigFactory.parse_string("\n".join(lines), basedir=str(path.parent))

    env_name = _lookup(tree, "env") or _DEFAULTS["env"]
    values: dict[str, Any] = {}
    for name, keys, kind in _KEYS:
        value = next((v for v in (_lookup(tree, k) for k in keys) if v is not None), None)
        if value is None:
            primary = keys[0]
            if primary in _ENV_TEMPLATES:
                value = _ENV_TEMPLATES[primary].format(env=env_name)
            elif primary in _DEFAULTS:
                value = _DEFAULTS[primary]
            else:
                raise ConfigError(f"config key {primary!r} is missing in {path}")
        values[name] = _coerce(keys[0], value, kind)
    if values["trigger"] not in ("processing-time", "available-now"):
        raise ConfigError(
            "stream.trigger.mode must be processing-time or available-now, "
            f"got {values['trigger']!r}"
        )
    if values["write_batch_size"] < 1:
        raise ConfigError("threshold.batch.write.size must be at least 1")
    return JobConfig(**values, credentials=Credentials.from_environ(environ))


def add_config_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options every entry point takes: ``--config``, ``--env``, ``--set key=value``."""
    parser.add_argument("--config", help=f"HOCON file (default: {DEFAULT_CONFIG_PATH})")
    parser.add_argument("--env", help="fills ${env} in topic and group names")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key (repeatable)",
    )
    return parser
