"""Job configuration: the original job's HOCON keys, read once into frozen dataclasses, one per
section of the file.

Each setting is declared once, as a field of its section (:class:`KafkaSettings`,
:class:`CassandraSettings`, ...) whose metadata carries its HOCON key(s), default and meaning;
the loader, ``--help`` and the configuration table (docs/configuration.md) are derived from them
(``runtime.settings_doc``). An I/O function takes the section it needs, not the whole job's
configuration. Credentials come only from environment variables, each in the section of the
store it opens, and are masked in ``repr`` so they never reach a log line.

The file is HOCON as in the Sunbird job family, so an operator's existing Flink-job ``.conf``
(with the base-config connection keys) loads unchanged. ``--env`` sets the ``env`` key that fills
``${env}`` in topic and group names; ``--set key=value`` overrides any key. A key no setting
declares (a typo would quietly run a default) stops the job, naming the closest declared one;
keys of the Flink job family's own configuration are ignored (``IGNORED_PREFIXES``).

Example::

    cfg = load_config("conf/enrolment-reconciliation.conf", env="prod",
                      overrides=["threshold.batch.write.size=20"])
    cfg.kafka.input_topic         # 'prod.batch.enrolment.sync.request'
    cfg.with_overrides("backfill.slices=4").backfill.slices  # 4
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from pyhocon import ConfigFactory, ConfigTree

log = logging.getLogger(__name__)

# The config file when --config names none: spark-submit.sh sets ER_CONFIG to the deployment's
# file. Without either, every setting has its declared default (the same values as the shipped
# conf/enrolment-reconciliation.conf) and --set overrides.
CONFIG_ENV = "ER_CONFIG"


class ConfigError(ValueError):
    """A configuration key is missing or has a value of the wrong type."""


def setting(key: str, default: Any, help: str, *aliases: str, choices: tuple = ()) -> Any:
    """Declare one setting: its HOCON key (plus the aliases an operator's older file may use), its
    default (a ``str`` default may use ``{env}``) and what it means."""
    return field(
        metadata={"keys": (key, *aliases), "default": default, "help": help, "choices": choices}
    )


def credential(env: str, *, secret: bool = True) -> Any:
    """Declare a credential read from the environment variable ``env`` (never from the file);
    a ``secret`` one is never shown, not even in ``repr``."""
    return field(default=None, repr=False, metadata={"env": env, "secret": secret})


@dataclass(frozen=True, repr=False)
class _Section:
    """What every section shares: a ``repr`` that names the credentials set, never their values."""

    def __repr__(self) -> str:
        shown = [
            f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if "env" not in f.metadata
        ]
        present = [f.name for f in fields(self) if "env" in f.metadata and getattr(self, f.name)]
        if present:
            shown.append(f"credentials={present}")
        return f"{type(self).__name__}({', '.join(shown)})"

    __str__ = __repr__

    def secrets(self) -> list[str]:
        """The secret values that are set (to check that none reaches an output)."""
        return [
            value
            for f in fields(self)
            if f.metadata.get("secret") and (value := getattr(self, f.name))
        ]


@dataclass(frozen=True, repr=False)
class KafkaSettings(_Section):
    """``kafka.*``: brokers, topics, the consumer group, TLS/SASL."""

    broker_servers: str = setting("kafka.broker-servers", "localhost:9092", "Kafka brokers")
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
    fetch_max_wait_ms: int = setting(
        "kafka.fetch.max.wait.ms",
        10,
        "longest the stream's consumer waits at the broker for more data; a micro-batch reads"
        " a fixed offset range, so waiting gains nothing (the client's default, 500 ms, was"
        " added to every micro-batch)",
    )
    security_protocol: str = setting(
        "kafka.security.protocol",
        "PLAINTEXT",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; SASL credentials from `KAFKA_SASL_*`",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    )
    sasl_mechanism: str = setting(
        "kafka.sasl.mechanism",
        "PLAIN",
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
        choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    )
    truststore_location: str = setting(
        "kafka.ssl.truststore.location",
        "",
        "JKS truststore for SSL/SASL_SSL (password from `KAFKA_TRUSTSTORE_PASSWORD`)",
    )
    sasl_username: str | None = credential("KAFKA_SASL_USERNAME", secret=False)
    sasl_password: str | None = credential("KAFKA_SASL_PASSWORD")
    truststore_password: str | None = credential("KAFKA_TRUSTSTORE_PASSWORD")


@dataclass(frozen=True, repr=False)
class CassandraSettings(_Section):
    """``lms-cassandra.*``: where the tables are and how to reach them."""

    host: str = setting("lms-cassandra.host", "localhost", "Cassandra contact point(s)")
    port: int = setting("lms-cassandra.port", 9042, "Cassandra CQL port")
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
    ssl_enabled: bool = setting(
        "lms-cassandra.ssl.enabled", False, "TLS to Cassandra (connector and Python driver)"
    )
    truststore_path: str = setting(
        "lms-cassandra.ssl.truststore.path",
        "",
        "JKS truststore for the connector; password from `LMS_CASSANDRA_TRUSTSTORE_PASSWORD`",
    )
    ca_file: str = setting(
        "lms-cassandra.ssl.ca.file", "", "PEM CA file for the Python driver (aggregate writes)"
    )
    read_timeout_ms: int = setting(
        "lms-cassandra.read.timeout.ms",
        30000,
        "per-request timeout of reads and writes; a stuck batch then fails and is retried",
    )
    query_retries: int = setting(
        "lms-cassandra.query.retry.count",
        3,
        "connector retries of a timed-out query (the connector's default, 60, can stall minutes)",
    )
    username: str | None = credential("LMS_CASSANDRA_USERNAME", secret=False)
    password: str | None = credential("LMS_CASSANDRA_PASSWORD")
    truststore_password: str | None = credential("LMS_CASSANDRA_TRUSTSTORE_PASSWORD")


@dataclass(frozen=True, repr=False)
class RedisSettings(_Section):
    """``redis.*``: the relation cache, and how long the driver keeps what it read."""

    host: str = setting("redis.host", "localhost", "Redis of the relation cache")
    port: int = setting("redis.port", 6379, "Redis port")
    relation_cache_db: int = setting(
        "redis.database.relationCache.id", 10, "Redis database of the relation cache"
    )
    relation_cache_ttl: int = setting(
        "relation-cache.ttl", 300, "seconds the driver keeps relation-cache keys between batches"
    )
    password: str | None = credential("REDIS_PASSWORD")


@dataclass(frozen=True, repr=False)
class SearchSettings(_Section):
    """``service.search.*``: the Sunbird search service, asked for a collection's status."""

    base_path: str = setting(
        "service.search.basePath", "http://11.2.6.6/search", "Sunbird search service"
    )
    status_cache_expiry: int = setting(
        "activity.collection.status.cache.expiry",
        3600,
        "seconds a collection status from the search service is cached",
    )
    api_key: str | None = credential("SEARCH_API_KEY")


@dataclass(frozen=True, repr=False)
class ActivitySettings(_Section):
    """``activity.*``: the rules of the reconciliation (docs/behaviour.md)."""

    module_aggs_enabled: bool = setting(
        "activity.module.aggs.enabled", True, "write unit (module) aggregates too"
    )
    filter_processed_enrolments: bool = setting(
        "activity.filter.processed.enrolments", True, "leave completed enrolments (status 2) alone"
    )
    exclude_optional_nodes: bool = setting(
        "activity.exclude.optional.nodes",
        True,
        "subtract optionalnodes from the required leaves (the AAU rule); false: the original ER",
    )


@dataclass(frozen=True, repr=False)
class WriteSettings(_Section):
    """``write.*`` and ``threshold.batch.write.size``: how both writers write."""

    batch_size: int = setting(
        "threshold.batch.write.size", 10, "CQL statements per logged batch of aggregate UPDATEs"
    )
    concurrency: int = setting(
        "write.concurrency", 32, "write batches in flight per task, both writers"
    )
    max_per_second: int = setting(
        "write.max.per.second",
        0,
        "bound on rows written per second by each writer (0: unbounded; `--max-writes-per-second`)",
    )


@dataclass(frozen=True, repr=False)
class StateSettings(_Section):
    """``state.*``: where the job keeps what must survive its driver (``JobConfig.locations``)."""

    location: str = setting(
        "state.location",
        "",
        "base of the job's state: the stream's checkpoint and outbox, the backfill's outbox and "
        "staging, laid out by env and mode beneath it; any Hadoop path (`hdfs://`, a shared "
        "mount). Empty: `$ER_STATE_DIR` (`spark-submit.sh` sets the deployment's `state/`), else "
        "`~/.local/state/enrolment-reconciliation`. With a cluster master it must be shared",
    )
    shared: bool = setting(
        "state.shared",
        False,
        "a local path in `state.location` (or a location below) is a mount every driver host "
        "sees: allowed with a cluster master (`spark://`, `yarn`, `k8s://`)",
    )


@dataclass(frozen=True, repr=False)
class StreamSettings(_Section):
    """``stream.*``: the Kafka Structured Streaming mode."""

    checkpoint_location: str = setting(
        "stream.checkpoint.location",
        "",
        "Spark checkpoint of the stream (empty: `<state.location>/<env>/stream`)",
    )
    outbox_location: str = setting(
        "stream.outbox.location",
        "",
        "durable outbox of the stream's and `sync`'s completion events (empty: beside the "
        "checkpoint); never an object store: it relies on an atomic rename",
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
        "stream.starting.offsets",
        "earliest",
        "where a new checkpoint starts: earliest | latest",
        choices=("earliest", "latest"),
    )
    max_offsets_per_trigger: int = setting(
        "stream.max.offsets.per.trigger", 10000, "most requests per micro-batch (0: no limit)"
    )
    restart_max_attempts: int = setting(
        "stream.restart.max.attempts",
        20,
        "consecutive failed micro-batches (each an infrastructure fault) before the job stops",
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
        "a micro-batch running longer is cancelled and retried like any other fault (the last"
        " resort: several times the slowest micro-batch measured, the first after a start)",
    )


@dataclass(frozen=True, repr=False)
class BackfillSettings(_Section):
    """``backfill.*``: the nightly backfill and the certificate repair."""

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
    outbox_location: str = setting(
        "backfill.outbox.location",
        "",
        "durable outbox of the backfill's completion events (empty: "
        "`<state.location>/<env>/backfill/outbox`); never an object store",
    )
    staging_location: str = setting(
        "backfill.staging.location",
        "",
        "where a sliced backfill stages its users and the aggregates it compares with, by slice "
        "(a Hadoop path every executor sees; empty: `<state.location>/<env>/backfill/staging`), "
        "deleted when the run finishes",
    )
    slices: int = setting(
        "backfill.slices",
        0,
        "slices a backfill works through, each one batch over a share of the users (0: one per "
        "128 MiB of `user_content_consumption` by Cassandra's size estimates, and at least one "
        "per 10,000 users)",
    )
    runs_table: str = setting(
        "backfill.progress.table",
        "enrolment_reconciliation_backfill_progress",
        "table (in the keyspace) recording each run and its finished slices, so a stopped run "
        "resumes",
    )
    resume_max_age_hours: float = setting(
        "backfill.resume.max.age.hours",
        24.0,
        "an unfinished run started longer ago than this is not resumed: the next run starts over",
    )
    slice_retries: int = setting(
        "backfill.slice.retries",
        3,
        "attempts after the first for a slice that fails with an infrastructure fault (a store "
        "unreachable, a lost executor); a defect is never retried",
    )
    slice_backoff_seconds: float = setting(
        "backfill.slice.retry.backoff.seconds",
        5.0,
        "wait before a slice's first retry, doubled for each further one",
    )
    repair_certificates: bool = setting(
        "backfill.repair.certificates",
        False,
        "also send a certificate request for every completed enrolment in scope without a "
        "certificate in a batch with a template (`--repair-certificates`; run on demand)",
    )


@dataclass(frozen=True, repr=False)
class MetricsSettings(_Section):
    """``metrics.*``: how the job's figures reach Prometheus."""

    prometheus_port: int = setting(
        "metrics.prometheus.port", 0, "port of the driver's Prometheus endpoint (0: off)"
    )
    pushgateway_url: str = setting(
        "metrics.pushgateway.url",
        "",
        "Prometheus Pushgateway a batch run (backfill, dry run, repair, `sync`) pushes to as it "
        "starts and, with its outcome and counters, as it ends, e.g. `http://pushgateway:9091` "
        "(empty: off)",
    )
    pushgateway_job: str = setting(
        "metrics.pushgateway.job",
        "enrolment-reconciliation",
        "the `job` label of what a batch run pushes (grouped further by `mode` and `env`)",
    )


SECTIONS: dict[str, type[_Section]] = {
    "state": StateSettings,
    "kafka": KafkaSettings,
    "cassandra": CassandraSettings,
    "redis": RedisSettings,
    "search": SearchSettings,
    "activity": ActivitySettings,
    "write": WriteSettings,
    "stream": StreamSettings,
    "backfill": BackfillSettings,
    "metrics": MetricsSettings,
}
ENV_KEY = "env"
ENV_DEFAULT = "sunbirddev"
ENV_HELP = "fills `${env}` in topic and group names (`--env`)"


STATE_DIR_ENV = "ER_STATE_DIR"
# Object stores have no atomic rename, which the outbox's "write, then rename into place" needs.
OBJECT_STORE_SCHEMES = frozenset(
    {"s3", "s3a", "s3n", "gs", "abfs", "abfss", "wasb", "wasbs", "oss", "cos", "cosn", "obs"}
)
CLUSTER_MASTERS = ("spark://", "yarn", "k8s://", "mesos://")


def _join(location: str, *names: str) -> str:
    return "/".join([location.rstrip("/"), *names])


def _scheme(location: str) -> str:
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*):", location)
    return match.group(1).lower() if match else ""


@dataclass(frozen=True)
class StateLocations:
    """Where each piece of the job's state lives, by the setting that places it."""

    stream_checkpoint: str
    stream_outbox: str
    backfill_outbox: str
    backfill_staging: str

    @property
    def stream_query(self) -> str:
        """The streaming query's own checkpoint (offsets, commits) under the location."""
        return _join(self.stream_checkpoint, "query")

    def by_setting(self) -> dict[str, str]:
        return {
            "stream.checkpoint.location": self.stream_checkpoint,
            "stream.outbox.location": self.stream_outbox,
            "backfill.outbox.location": self.backfill_outbox,
            "backfill.staging.location": self.backfill_staging,
        }


OUTBOXES = ("stream.outbox.location", "backfill.outbox.location")


def check_state_locations(
    locations: StateLocations,
    *,
    shared: bool,
    master: str,
    used: Iterable[str] | None = None,
) -> None:
    """Refuse, before anything runs, state that would not survive: an outbox on an object store
    (no atomic rename), or a path on the driver's own disk when the driver runs on a cluster.
    ``used``: the settings whose locations the mode uses (all by default)."""
    for key, location in locations.by_setting().items():
        if used is not None and key not in used:
            continue
        scheme = _scheme(location)
        if key in OUTBOXES and scheme in OBJECT_STORE_SCHEMES:
            raise ConfigError(
                f"{key} is on {scheme}://, an object store without an atomic rename, which the "
                f"outbox relies on: put it on HDFS or a shared mount ({key}, or state.location "
                "for every piece of state)"
            )
        local = scheme in ("", "file")
        if local and not shared and master.startswith(CLUSTER_MASTERS):
            raise ConfigError(
                f"{key} is {location}, on the driver's own disk, and the master is {master}: a "
                "driver that comes back on another host would not find it. Set state.location "
                "to shared storage (hdfs://...), or state.shared=true if the path is a mount "
                "every driver host sees"
            )


@dataclass(frozen=True)
class JobConfig:
    """Every setting the job reads, by section, in one immutable value built by
    :func:`load_config`."""

    env: str
    state: StateSettings
    kafka: KafkaSettings
    cassandra: CassandraSettings
    redis: RedisSettings
    search: SearchSettings
    activity: ActivitySettings
    write: WriteSettings
    stream: StreamSettings
    backfill: BackfillSettings
    metrics: MetricsSettings

    @property
    def locations(self) -> StateLocations:
        """Every piece of state: a setting given for it, or its place under
        ``<state.location>/<env>``."""
        base = _join(self.state.location, self.env)
        checkpoint = self.stream.checkpoint_location or _join(base, "stream")
        return StateLocations(
            stream_checkpoint=checkpoint,
            stream_outbox=self.stream.outbox_location or _join(checkpoint, "outbox"),
            backfill_outbox=self.backfill.outbox_location or _join(base, "backfill", "outbox"),
            backfill_staging=self.backfill.staging_location or _join(base, "backfill", "staging"),
        )

    def with_overrides(self, *assignments: str) -> JobConfig:
        """A copy with some settings changed, by their HOCON keys (notebooks, tests)::

        cfg.with_overrides("backfill.slices=4", "lms-cassandra.keyspace=er_test")
        """
        cfg = self
        for assignment in assignments:
            key, value = _split_assignment(assignment)
            section_name, found = _declaration(key)
            section = getattr(cfg, section_name)
            coerced = _coerce(key, _unquote(value), _kind(type(section), found))
            _check_choice(found, coerced)
            cfg = replace(cfg, **{section_name: replace(section, **{found.name: coerced})})
        return cfg

    def secrets(self) -> list[str]:
        """Every secret value that is set (to check that none reaches an output)."""
        return [s for name in SECTIONS for s in getattr(self, name).secrets()]


# --- declarations -------------------------------------------------------------------------------
def declared_settings() -> Iterator[tuple[str, Field]]:
    """Every declared setting as (section name, field), in the order of the settings table."""
    for name, section in SECTIONS.items():
        for f in fields(section):
            if "keys" in f.metadata:
                yield name, f


def declared_keys() -> list[str]:
    """Every HOCON key a setting reads (aliases included), and ``env``."""
    return [ENV_KEY, *(k for _, f in declared_settings() for k in f.metadata["keys"])]


def credential_variables() -> list[str]:
    """The environment variables credentials come from."""
    return [f.metadata["env"] for s in SECTIONS.values() for f in fields(s) if "env" in f.metadata]


def _declaration(key: str) -> tuple[str, Field]:
    for section_name, f in declared_settings():
        if key in f.metadata["keys"]:
            return section_name, f
    raise ConfigError(_unknown_key_message(key, "no setting has this key"))


def _unknown_key_message(key: str, what: str) -> str:
    close = difflib.get_close_matches(key, declared_keys(), n=1, cutoff=0.6)
    return f"{key}: {what}" + (f"; did you mean {close[0]!r}?" if close else "")


_TYPES: dict[str, type] = {"str": str, "int": int, "bool": bool, "float": float}


def _kind(section: type, f: Field) -> type:
    hinted = get_type_hints(section)[f.name]
    return hinted if isinstance(hinted, type) else _TYPES[str(f.type)]


# --- values ---------------------------------------------------------------------------------------
_BARE_LITERAL = re.compile(r"^(true|false|-?\d+(\.\d+)?)$")


def _split_assignment(assignment: str) -> tuple[str, str]:
    key, sep, value = assignment.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    return key, value


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _hocon_assignment(override: str) -> tuple[str, str]:
    """``key=value`` as (key, HOCON line); strings are quoted so dots and colons survive."""
    key, value = _split_assignment(override)
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


def _check_choice(f: Field, value: Any) -> None:
    choices = f.metadata["choices"]
    if choices and value not in choices:
        raise ConfigError(
            f"{f.metadata['keys'][0]} must be one of {', '.join(choices)}, got {value!r}"
        )


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


def default_state_location(environ: Mapping[str, str]) -> str:
    """``$ER_STATE_DIR`` (the deployment's ``state/``), else the user's state folder: never a
    folder a reboot may empty, such as ``/tmp``."""
    if environ.get(STATE_DIR_ENV):
        return environ[STATE_DIR_ENV]
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return _join(base, "enrolment-reconciliation")


TO_CHOOSE = "CHOOSE"  # conf/templates/production.conf marks what an operator must fill in


def _validate(cfg: JobConfig, environ: Mapping[str, str]) -> JobConfig:
    if cfg.env == TO_CHOOSE:
        raise ConfigError(f"env is {TO_CHOOSE}: the production template's value; set it")
    for name, f in declared_settings():
        if getattr(getattr(cfg, name), f.name) == TO_CHOOSE:
            raise ConfigError(
                f"{f.metadata['keys'][0]} is {TO_CHOOSE}: the production template's value; set it"
            )
    if cfg.write.batch_size < 1:
        raise ConfigError("threshold.batch.write.size must be at least 1")
    interval = spark_interval("stream.trigger.interval", cfg.stream.trigger_interval)
    state = cfg.state
    if not state.location:
        state = replace(state, location=default_state_location(environ))
    cfg = replace(cfg, state=state, stream=replace(cfg.stream, trigger_interval=interval))
    check_state_locations(cfg.locations, shared=True, master="")  # an outbox on an object store
    return cfg


# --- loading --------------------------------------------------------------------------------------
# Keys of the Sunbird Flink job family's configuration (its base-config.conf and the original
# job's file) that mean nothing to this job: an operator's existing file loads with them, and they
# are ignored. Any other key no setting declares is a mistake (a typo would quietly run a default)
# and stops the job. ``vars.*`` is free for an operator's own substitutions.
IGNORED_PREFIXES = (
    "job.",
    "task.",
    "redisdb.",
    "dp-redis.",
    "kafka.zookeeper",
    "kafka.producer.",
    "kafka.consumer.",
    "kafka.auto.offset.reset",
    "kafka.output.system.event.topic",
    "redis.database.",
    "redis.connection.",
    "lms-cassandra.isMultiDCEnabled",
    "lms-cassandra.consistency.",
    "service.",
    "vars.",
)


def _leaf_keys(tree: ConfigTree, prefix: str = "") -> Iterator[str]:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, ConfigTree):
            yield from _leaf_keys(value, f"{path}.")
        else:
            yield path


def undeclared_keys(keys: Iterable[str]) -> list[str]:
    """The keys no setting declares and the Flink job family does not explain."""
    declared = set(declared_keys())
    return [k for k in keys if k not in declared and not k.startswith(IGNORED_PREFIXES)]


def _refuse_undeclared(tree: ConfigTree, set_keys: list[str], file: Path | None) -> None:
    unknown_set = undeclared_keys(set_keys)
    if unknown_set:
        raise ConfigError(
            "; ".join(
                "--set " + _unknown_key_message(k, "no setting has this key") for k in unknown_set
            )
        )
    unknown = undeclared_keys(_leaf_keys(tree))
    if unknown:
        where = f"in {file}" if file is not None else "in the configuration"
        raise ConfigError(
            f"{where}: "
            + "; ".join(_unknown_key_message(k, "no setting has this key") for k in unknown)
        )


def _section_values(
    section: type[_Section], tree: ConfigTree, env_name: str, environ: Mapping[str, str]
) -> _Section:
    values: dict[str, Any] = {}
    for f in fields(section):
        if "env" in f.metadata:
            values[f.name] = environ.get(f.metadata["env"]) or None
            continue
        keys, default = f.metadata["keys"], f.metadata["default"]
        value = next((v for v in (_lookup(tree, k) for k in keys) if v is not None), None)
        if value is None:
            value = default.format(env=env_name) if isinstance(default, str) else default
        values[f.name] = _coerce(keys[0], value, _kind(section, f))
        _check_choice(f, values[f.name])
    return section(**values)


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
    file = Path(chosen) if chosen else None
    if file is not None and not file.is_file():
        raise ConfigError(f"config file not found: {file}")
    lines = [file.read_text(encoding="utf-8")] if file is not None else []
    if env is not None:
        lines.append(_hocon_assignment(f"{ENV_KEY}={env}")[1])
    set_keys = []
    for override in overrides:
        key, line = _hocon_assignment(override)
        set_keys.append(key)
        lines.append(line)
    basedir = str(file.parent) if file is not None else None
    tree = ConfigFactory.parse_string("\n".join(lines), basedir=basedir)
    _refuse_undeclared(tree, set_keys, file)
    env_name = str(_lookup(tree, ENV_KEY) or ENV_DEFAULT)
    environ = os.environ if environ is None else environ
    sections = {
        name: _section_values(section, tree, env_name, environ)
        for name, section in SECTIONS.items()
    }
    return _validate(JobConfig(env=env_name, **sections), environ)  # type: ignore[arg-type]


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
        help="override a setting (repeatable; `spark-submit.sh --help` lists every key)",
    )
    return parser
