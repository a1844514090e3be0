"""No credential reaches any output: the stack runs Cassandra with PasswordAuthenticator and Redis
with requirepass (stack/stack.sh), the job gets the passwords from its environment, and neither
its logs, events, failed payloads, checkpoint, dry-run report nor ``--help`` ever shows them."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import (
    config_for,
    messages_on,
    produce,
    run_job,
    seed,
    spark_submit,
    stack_config,
    sync_request,
)

pytestmark = pytest.mark.integration


def _leaks(text: str, secrets: list[str]) -> list[str]:
    return [f"secret #{i}" for i, s in enumerate(secrets) if s in text]


def test_the_stack_requires_the_credentials():
    import redis
    from cassandra.cluster import Cluster, NoHostAvailable

    cfg = stack_config()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=cfg.redis.host, port=cfg.redis.port).ping()
    cluster = Cluster([cfg.cassandra.host], port=cfg.cassandra.port, protocol_version=5)
    with pytest.raises(NoHostAvailable, match="requires authentication"):
        cluster.connect()
    cluster.shutdown()


def test_no_credential_in_logs_events_failed_payloads_checkpoint_or_report(cql, tmp_path):
    env = f"secrets{uuid.uuid4().hex[:8]}"
    cfg, args = config_for(env, tmp_path)
    secrets = cfg.secrets()
    assert len(secrets) >= 2, "the stack's Cassandra and Redis passwords must be in the environment"
    seed(cql, cfg)
    produce(
        cfg,
        [
            sync_request("user001", "course001", "Batch1").encode(),
            b"{not json",
            sync_request("u" * 2000, "course001", "Batch1").encode(),
        ],
    )
    stream = run_job(args)
    assert stream.returncode == 0, stream.stdout[-3000:] + stream.stderr[-3000:]
    report = tmp_path / "report"
    dry = spark_submit("backfill", [*args, "--courses", "course001", "--dry-run", str(report)])
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]

    outputs = {
        "stream log": stream.stdout + stream.stderr,
        "backfill log": dry.stdout + dry.stderr,
    }
    for topic in (cfg.kafka.failed_topic, cfg.kafka.audit_topic, cfg.kafka.certissue_topic):
        outputs[topic] = repr(messages_on(cfg, topic))
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".png"]
    assert any(p.name == "summary.json" for p in files)
    for path in files:
        outputs[str(path.relative_to(tmp_path))] = path.read_text(errors="replace")
    assert "malformed JSON" in outputs[cfg.kafka.failed_topic]  # the failures are there
    assert {name: leaks for name, text in outputs.items() if (leaks := _leaks(text, secrets))} == {}
