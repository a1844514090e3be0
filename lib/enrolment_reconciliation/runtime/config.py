"""Job configuration: the original job's HOCON keys, read once into a frozen dataclass.

Each setting is declared once, as a field of :class:`JobConfig` whose metadata carries its HOCON
key(s), default and meaning; the loader, ``--help`` and the README's configuration table are all
derived from those declarations (``python -m enrolment_reconciliation.runtime.config --markdown``).

The file is HOCON as in the Sunbird job family, so an operator's existing Flink-job ``.conf``
(with the base-config connection keys) loads unchanged. ``--env`` sets the ``env`` key that fills
``${env}`` in topic and group names; ``--set key=value`` overrides any key (an undeclared key is
reported with the closest declared one). Credentials come only from environment variables and are
masked in ``repr`` so they never reach a log line.

Example::

    cfg = load_config("conf/enrolment-reconciliation.conf", env="prod",
                      overrides=["threshold.batch.write.size=20"])
    cfg.input_topic  # 'prod.batch.enrolment.sync.request'
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pyhocon import ConfigFactory, ConfigTree

log = logging.getLogger(__name__)

# The config file when --config names none: spark-submit.sh sets ER_CONFIG to the deployment's
# file. Without either, every setting has its declared default (the same values as the shipped
# conf/enrolment-reconciliation.conf) and --set overrides.
CONFIG_ENV = "ER_CONFIG"

# Environment variables holding secrets; never part of the HOCON file.
CREDENTIAL_ENV = {
    "cassandra_username": "LMS_CASSANDRA_USERNAME",
    "cassandra_password": "LMS_CASSANDRA_PASSWORD",
    "cassandra_truststore_password": "LMS_CASSANDRA_TRUSTSTORE_PASSWORD",
    "redis_password": "REDIS_PASSWORD",
    "kafka_sasl_username": "KAFKA_SASL_USERNAME",
    "kafka_sasl_password": "KAFKA_SASL_PASSWORD",
    "kafka_truststore_password": "KAFKA_TRUSTSTORE_PASSWORD",
    "search_api_key": "SEARCH_API_KEY",
}
_SECRET_FIELDS = {name for name in CREDENTIAL_ENV if name.endswith(("password", "_key"))}


class ConfigError(ValueError):
    """A configuration key is missing or has a value of the wrong type."""


@dataclass(frozen=True)
class Credentials:
    """Secrets from the environment; ``repr`` shows only which ones are set."""

    cassandra_username: str | None = None
    cassandra_password: str | None = field(default=None, repr=False)
    cassandra_truststore_password: str | None = field(default=None, repr=False)
    redis_password: str | None = field(default=None, repr=False)
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_truststore_password: str | None = field(default=None, repr=False)
    search_api_key: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        present = [f.name for f in fields(self) if getattr(self, f.name)]
        return f"Credentials(set={present})"

    def secrets(self) -> list[str]:
        """The secret values that are set (to check that none reaches an output)."""
        return [v for n in _SECRET_FIELDS if (v := getattr(self, n))]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        environ = os.environ if environ is None else environ
        return cls(**{name: environ.get(var) or None for name, var in CREDENTIAL_ENV.items()})


def setting(key: str, default: Any, help: str, *aliases: str, choices: tuple = ()) -> Any:
    """Declare one setting: its HOCON key (plus the aliases an operator's older file may use), its
    default (a ``str`` default may use ``{env}``) and what it means."""
    return field(
        metadata={"keys": (key, *aliases), "default": default, "help": help, "choices": choices}
    )


@dataclass(frozen=True)
class JobConfig:
    """Every setting the job reads, in one immutable value built by :func:`load_config`."""

    env: str = setting("env", "sunbirddev", "fills `${env}` in topic and group names (`--env`)")
    # Kafka
    kafka_broker_servers: str = setting("kafka.broker-servers", "localhost:9092", "Kafka brokers")
    input_topic: str = setting(
        "kafka.input.topic", "{env}.batch.enrolment.sync.request", "sync requests to read"
    )
    failed_topic: str = setting(
        "kafka.output.failed.topic",
        "{env}.enrolment.reconciliation.failed",
        "requests that cannot be reconciled, with the reason",
    )
    audit_topic: str = setting(
        "kafka.audit.topic",
        "{env}.telemetry.raw",
        "AUDIT `enrol-complete` events",
        "kafka.output.audit.topic",
    )
    certissue_topic: str = setting(
        "kafka.certissue.topic",
        "{env}.issue.certificate.request",
        "certificate-issue requests",
        "kafka.output.certissue.topic",
    )
    group_id: str = setting(
        "kafka.groupId", "{env}-enrolment-reconciliation-group", "consumer group of the stream"
    )
    kafka_fetch_max_wait_ms: int = setting(
        "kafka.fetch.max.wait.ms",
        10,
        "longest the stream's consumer waits at the broker for more data; a micro-batch reads"
        " a fixed offset range, so waiting gains nothing (the client's 500 ms was added to"
        " every micro-batch)",
    )
    kafka_security_protocol: str = setting(
        "kafka.security.protocol",
        "PLAINTEXT",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; SASL credentials from `KAFKA_SASL_*`",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    )
    kafka_sasl_mechanism: str = setting(
        "kafka.sasl.mechanism", "PLAIN", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    kafka_truststore_location: str = setting(
        "kafka.ssl.truststore.location",
        "",
        "JKS truststore for SSL/SASL_SSL (password from `KAFKA_TRUSTSTORE_PASSWORD`)",
    )
    # Cassandra
    cassandra_host: str = setting("lms-cassandra.host", "localhost", "Cassandra contact point(s)")
    cassandra_port: int = setting("lms-cassandra.port", 9042, "Cassandra CQL port")
    keyspace: str = setting("lms-cassandra.keyspace", "sunbird_courses", "keyspace of the tables")
    consumption_table: str = setting(
        "lms-cassandra.content_consumption.table",
        "user_content_consumption",
        "content consumption rows (read)",
        "lms-cassandra.consumption.table",
    )
    enrolments_table: str = setting(
        "lms-cassandra.user_enrolments.table", "user_enrolments", "enrolments (read and written)"
    )
    activity_agg_table: str = setting(
        "lms-cassandra.user_activity_agg.table",
        "user_activity_agg",
        "course and unit aggregates (map-appended)",
    )
    course_batch_table: str = setting(
        "lms-cassandra.course_batch.table",
        "course_batch",
        "batches and their certificate templates (read by `--repair-certificates`)",
    )
    cassandra_ssl_enabled: bool = setting(
        "lms-cassandra.ssl.enabled", False, "TLS to Cassandra (connector and Python driver)"
    )
    cassandra_truststore_path: str = setting(
        "lms-cassandra.ssl.truststore.path",
        "",
        "JKS truststore for the connector; password from `LMS_CASSANDRA_TRUSTSTORE_PASSWORD`",
    )
    cassandra_ca_file: str = setting(
        "lms-cassandra.ssl.ca.file", "", "PEM CA file for the Python driver (aggregate writes)"
    )
    cassandra_read_timeout_ms: int = setting(
        "lms-cassandra.read.timeout.ms",
        30000,
        "per-request timeout of reads and writes; a stuck batch then fails and is retried",
    )
    cassandra_query_retries: int = setting(
        "lms-cassandra.query.retry.count",
        3,
        "connector retries of a timed-out query (the connector's default, 60, can stall minutes)",
    )
    # Redis
    redis_host: str = setting("redis.host", "localhost", "Redis of the relation cache")
    redis_port: int = setting("redis.port", 6379, "Redis port")
    relation_cache_db: int = setting(
        "redis.database.relationCache.id", 10, "Redis database of the relation cache"
    )
    # behaviour (the original job's keys)
    write_batch_size: int = setting(
        "threshold.batch.write.size", 10, "CQL statements per logged batch of aggregate UPDATEs"
    )
    module_aggs_enabled: bool = setting(
        "activity.module.aggs.enabled", True, "write unit (module) aggregates too"
    )
    filter_processed_enrolments: bool = setting(
        "activity.filter.processed.enrolments", True, "leave completed enrolments (status 2) alone"
    )
    collection_status_cache_expiry: int = setting(
        "activity.collection.status.cache.expiry",
        3600,
        "seconds a collection status from the search service is cached",
    )
    search_base_path: str = setting(
        "service.search.basePath", "http://11.2.6.6/search", "Sunbird search service"
    )
    # behaviour (added by this job)
    exclude_optional_nodes: bool = setting(
        "activity.exclude.optional.nodes",
        True,
        "subtract optionalnodes from the required leaves (the AAU rule); false: the original ER",
    )
    relation_cache_ttl: int = setting(
        "relation-cache.ttl", 300, "seconds the driver keeps relation-cache keys between batches"
    )
    # streaming
    checkpoint_location: str = setting(
        "stream.checkpoint.location",
        "/tmp/enrolment-reconciliation/checkpoint",
        "Spark checkpoint of the stream; the outbox lives beside it",
    )
    trigger: str = setting(
        "stream.trigger.mode",
        "processing-time",
        "processing-time or available-now (drain the topic, then stop)",
        choices=("processing-time", "available-now"),
    )
    trigger_interval: str = setting(
        "stream.trigger.interval", "10 seconds", "processing-time trigger interval"
    )
    starting_offsets: str = setting(
        "stream.starting.offsets", "earliest", "where a new checkpoint starts: earliest | latest"
    )
    max_offsets_per_trigger: int = setting(
        "stream.max.offsets.per.trigger", 10000, "most requests per micro-batch (0: no limit)"
    )
    restart_max_attempts: int = setting(
        "stream.restart.max.attempts",
        20,
        "consecutive failed micro-batches before the job stops (20: about 9 min of an outage)",
    )
    restart_backoff_seconds: float = setting(
        "stream.restart.backoff.seconds",
        5,
        "first restart delay (doubles); ends early when a store that was down answers again",
    )
    restart_backoff_max_seconds: float = setting(
        "stream.restart.backoff.max.seconds", 30, "longest restart delay"
    )
    batch_timeout_seconds: int = setting(
        "stream.batch.timeout.seconds",
        120,
        "a micro-batch running longer is cancelled and retried like any other fault "
        "(the last resort: about 5x the slowest micro-batch measured, the first after a start)",
    )
    # writes
    write_concurrency: int = setting(
        "write.concurrency", 32, "write batches in flight per task, both writers"
    )
    max_writes_per_second: int = setting(
        "write.max.per.second",
        0,
        "bound on rows written per second by each writer (0: unbounded; `--max-writes-per-second`)",
    )
    # backfill
    lease_table: str = setting(
        "backfill.lease.table",
        "enrolment_reconciliation_lease",
        "table (in the keyspace) holding the backfill lease",
    )
    lease_seconds: int = setting(
        "backfill.lease.seconds",
        300,
        "lease lifetime; a running backfill renews it, a crashed one frees it after this time",
    )
    backfill_outbox_location: str = setting(
        "backfill.outbox.location",
        "/tmp/enrolment-reconciliation/backfill-outbox",
        "durable outbox of the backfill's completion events",
    )
    backfill_staging_location: str = setting(
        "backfill.staging.location",
        "/tmp/enrolment-reconciliation/backfill-staging",
        "where a sliced backfill of every course stages the aggregates it compares with (one "
        "scan, by slice; a Hadoop path every executor sees), deleted when the run finishes",
    )
    backfill_slices: int = setting(
        "backfill.slices",
        0,
        "slices a backfill works through, each one batch over a share of the users (0: one per "
        "128 MiB, about a million rows, of `user_content_consumption` by Cassandra's size "
        "estimates, at least 1)",
    )
    backfill_progress_table: str = setting(
        "backfill.progress.table",
        "enrolment_reconciliation_backfill_progress",
        "table (in the keyspace) recording each finished slice, so a stopped run resumes",
    )
    backfill_resume_max_age_hours: float = setting(
        "backfill.resume.max.age.hours",
        24.0,
        "an unfinished run started longer ago than this is not resumed: the next run starts over",
    )
    backfill_slice_retries: int = setting(
        "backfill.slice.retries",
        3,
        "attempts after the first for a slice that fails (a store unreachable, a lost executor)",
    )
    backfill_slice_backoff_seconds: float = setting(
        "backfill.slice.retry.backoff.seconds",
        5.0,
        "wait before a slice's first retry, doubled for each further one",
    )
    backfill_repair_certificates: bool = setting(
        "backfill.repair.certificates",
        False,
        "also send a certificate request for every completed enrolment in scope without a "
        "certificate in a batch with a template (`--repair-certificates`; run on demand)",
    )
    # operations
    prometheus_port: int = setting(
        "metrics.prometheus.port", 0, "port of the driver's Prometheus endpoint (0: off)"
    )
    credentials: Credentials = field(default_factory=Credentials)

    def with_overrides(self, **changes: Any) -> JobConfig:
        """Return a copy with some fields changed (handy in notebooks and tests)."""
        return replace(self, **changes)

    @property
    def stream_outbox_location(self) -> str:
        """The stream's (and ``sync``'s) outbox, beside its query checkpoint."""
        return self.checkpoint_location.rstrip("/") + "/outbox"

    @property
    def query_checkpoint(self) -> str:
        """The streaming query's own checkpoint (offsets, commits) under the location."""
        return self.checkpoint_location.rstrip("/") + "/query"


def declared_settings() -> list[Field]:
    """The fields of :class:`JobConfig` that are settings (all but the credentials)."""
    return [f for f in fields(JobConfig) if "keys" in f.metadata]


_TYPES: dict[str, type] = {"str": str, "int": int, "bool": bool, "float": float}
_BARE_LITERAL = re.compile(r"^(true|false|-?\d+(\.\d+)?)$")


def _kind(f: Field) -> type:
    return _TYPES[f.type] if isinstance(f.type, str) else f.type


def _hocon_assignment(override: str) -> tuple[str, str]:
    """``key=value`` as (key, HOCON line); strings are quoted so dots and colons survive."""
    key, sep, value = override.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {override!r}")
    rendered = value if _BARE_LITERAL.match(value) else json.dumps(value)
    return key, f"{key} = {rendered}"


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


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
_DURATION_MS = {
    **dict.fromkeys(("ms", "milli", "millis", "millisecond", "milliseconds"), 1),
    **dict.fromkeys(("", "s", "sec", "secs", "second", "seconds"), 1000),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60_000),
    **dict.fromkeys(("h", "hour", "hours"), 3_600_000),
}


def spark_interval(key: str, value: str) -> str:
    """A HOCON/Flink-style duration (``1s``, ``500ms``, ``2 minutes``) as Spark's interval text."""
    match = _DURATION.match(value.strip('"').lower())
    if not match or match.group(2) not in _DURATION_MS:
        raise ConfigError(
            f"{key} must be a duration such as 1s, 500ms or 10 seconds, got {value!r}"
        )
    millis = round(float(match.group(1)) * _DURATION_MS[match.group(2)])
    return f"{millis} milliseconds"


def undeclared_override_warnings(keys: Iterable[str]) -> list[str]:
    """A warning for each ``--set`` key that no setting declares, naming the closest one."""
    declared = [k for f in declared_settings() for k in f.metadata["keys"]]
    warnings = []
    for key in keys:
        if key in declared:
            continue
        close = difflib.get_close_matches(key, declared, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        warnings.append(f"--set {key}: no setting has this key, it is ignored{hint}")
    return warnings


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
    chosen = path or os.environ.get(CONFIG_ENV)
    path = Path(chosen) if chosen else None
    if path is not None and not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    lines = [path.read_text(encoding="utf-8")] if path is not None else []
    if env is not None:
        lines.append(_hocon_assignment(f"env={env}")[1])
    set_keys = []
    for override in overrides:
        key, line = _hocon_assignment(override)
        set_keys.append(key)
        lines.append(line)
    for warning in undeclared_override_warnings(set_keys):
        log.warning(warning)
    tree = ConfigFactory.parse_string(
        "\n".join(lines), basedir=str(path.parent) if path is not None else None
    )

    env_name = _lookup(tree, "env") or "sunbirddev"
    values: dict[str, Any] = {}
    for f in declared_settings():
        keys, default = f.metadata["keys"], f.metadata["default"]
        value = next((v for v in (_lookup(tree, k) for k in keys) if v is not None), None)
        if value is None:
            value = default.format(env=env_name) if isinstance(default, str) else default
        values[f.name] = _coerce(keys[0], value, _kind(f))
        if f.metadata["choices"] and values[f.name] not in f.metadata["choices"]:
            raise ConfigError(
                f"{keys[0]} must be one of {', '.join(f.metadata['choices'])}, "
                f"got {values[f.name]!r}"
            )
    if values["write_batch_size"] < 1:
        raise ConfigError("threshold.batch.write.size must be at least 1")
    values["trigger_interval"] = spark_interval(
        "stream.trigger.interval", values["trigger_interval"]
    )
    return JobConfig(**values, credentials=Credentials.from_environ(environ))


def settings_table(markdown: bool = True) -> str:
    """Every setting with its key, default and meaning: the README table and ``--help`` text."""
    rows = []
    for f in declared_settings():
        keys, default = f.metadata["keys"], f.metadata["default"]
        shown = json.dumps(default) if isinstance(default, bool) else str(default)
        shown = shown.replace("{env}", "${env}")
        rows.append((keys[0], shown, f.metadata["help"]))
    if not markdown:
        width = max(len(k) for k, _, _ in rows)
        return "\n".join(f"  {k:<{width}}  {h} (default: {d})" for k, d, h in rows)
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | `{d}` | {h} |" for k, d, h in rows]
    credentials = ", ".join(f"`{v}`" for v in CREDENTIAL_ENV.values())
    lines.append(f"| (environment) | | credentials, never in the file or a log: {credentials} |")
    return "\n".join(lines)


def add_config_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options every entry point takes: ``--config``, ``--env``, ``--set key=value``."""
    parser.add_argument(
        "--config", help=f"HOCON file (default: ${CONFIG_ENV}, else every setting's default)"
    )
    parser.add_argument("--env", help="fills ${env} in topic and group names")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key (repeatable; keys below)",
    )
    return parser


if __name__ == "__main__":
    print(settings_table(markdown="--markdown" in sys.argv))
