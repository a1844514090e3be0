"""Credentials never show in ``--help`` or a config dump; TLS and SASL settings reach the
Cassandra connector and Spark's Kafka source and sink (the options both are built from)."""

from __future__ import annotations

import subprocess
import sys
import uuid

from devkit.paths import PROJECT_ROOT
from enrolment_reconciliation.io.kafka import kafka_options
from enrolment_reconciliation.runtime.config import credential_variables, load_config
from enrolment_reconciliation.runtime.session import cassandra_conf


def _leaks(text: str, secrets: list[str]) -> list[str]:
    return [f"secret #{i}" for i, s in enumerate(secrets) if s in text]


def test_no_credential_in_help_or_the_config_dump():
    secrets = {
        var: f"s3cret-{var.lower()}-{uuid.uuid4().hex[:6]}" for var in credential_variables()
    }
    env = {"PATH": "/usr/bin:/bin", **secrets, "PYTHONPATH": str(PROJECT_ROOT / "lib")}

    def run(*args: str) -> str:
        command = [sys.executable, *args]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout + done.stderr

    job = str(PROJECT_ROOT / "jobs" / "enrolment_reconciliation_job.py")
    texts = [run(job, mode, "--help") for mode in ("stream", "sync", "backfill", "explain")]
    dump = run(
        "-c",
        "from enrolment_reconciliation.runtime.config import load_config;"
        " c = load_config(); print(repr(c)); print(c.cassandra); print(str(c.kafka))",
    )
    texts.append(dump)
    # the dump names which credentials are set, never their values
    assert "credentials=['username', 'password', 'truststore_password']" in dump
    assert [t for t in texts if _leaks(t, list(secrets.values()))] == []


def test_tls_and_sasl_settings_reach_the_connector_and_the_kafka_source_and_sink():
    cfg = load_config(
        overrides=[
            "kafka.security.protocol=SASL_SSL",
            "kafka.sasl.mechanism=SCRAM-SHA-512",
            "kafka.ssl.truststore.location=/etc/kafka/truststore.jks",
            "lms-cassandra.ssl.enabled=true",
            "lms-cassandra.ssl.truststore.path=/etc/cassandra/truststore.jks",
        ],
        environ={
            "KAFKA_SASL_USERNAME": "er-job",
            "KAFKA_SASL_PASSWORD": "kafka-pw",
            "KAFKA_TRUSTSTORE_PASSWORD": "kts-pw",
            "LMS_CASSANDRA_USERNAME": "lern",
            "LMS_CASSANDRA_PASSWORD": "cass-pw",
            "LMS_CASSANDRA_TRUSTSTORE_PASSWORD": "cts-pw",
        },
    )
    assert kafka_options(cfg.kafka) == {
        "kafka.bootstrap.servers": cfg.kafka.broker_servers,
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule"
        ' required username="er-job" password="kafka-pw";',
        "kafka.ssl.truststore.location": "/etc/kafka/truststore.jks",
        "kafka.ssl.truststore.password": "kts-pw",
    }
    conf = cassandra_conf(cfg.cassandra, cfg.write)
    assert {k: v for k, v in conf.items() if "auth" in k or "ssl" in k} == {
        "spark.cassandra.auth.username": "lern",
        "spark.cassandra.auth.password": "cass-pw",
        "spark.cassandra.connection.ssl.enabled": "true",
        "spark.cassandra.connection.ssl.trustStore.path": "/etc/cassandra/truststore.jks",
        "spark.cassandra.connection.ssl.trustStore.password": "cts-pw",
    }
