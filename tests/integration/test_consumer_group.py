"""The stream's lag as an operator's Kafka tools see it: after each applied micro-batch the
stream commits the batch's end offsets to ``kafka.groupId`` (for monitoring; the checkpoint stays
the truth), so ``kafka-consumer-groups --describe`` shows the lag grow while the stream is down
and return to 0 once it has drained the topic."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from devkit.paths import STACK_DIR
from tests.helpers import config_for, produce, run_job, seed, sync_request

pytestmark = pytest.mark.integration
# what kafka-consumer-groups.sh runs (Kafka 3.9's tools, resolved by stack/poms/kafka.xml)
CONSUMER_GROUP_COMMAND = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


def group_lag(bootstrap: str, group: str) -> dict[int, int | None]:
    """LAG per partition of ``group``, from the class ``kafka-consumer-groups.sh`` runs."""
    described = subprocess.run(
        ["java", "-cp", f"{STACK_DIR}/lib/kafka/*", CONSUMER_GROUP_COMMAND,
         "--bootstrap-server", bootstrap, "--describe", "--group", group],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert described.returncode == 0, described.stderr[-2000:]
    lines = [line.split() for line in described.stdout.splitlines() if line.strip()]
    header = next(i for i, words in enumerate(lines) if "LAG" in words)
    columns = lines[header]
    lag: dict[int, int | None] = {}
    for words in lines[header + 1 :]:
        row = dict(zip(columns, words, strict=False))
        lag[int(row["PARTITION"])] = None if row["LAG"] == "-" else int(row["LAG"])
    return lag


def test_the_consumer_group_shows_the_lag_while_the_stream_is_down(cql, tmp_path):
    env = f"lag{uuid.uuid4().hex[:8]}"
    cfg, args = config_for(env, tmp_path)
    seed(cql, cfg)
    bootstrap, group = cfg.kafka.broker_servers, cfg.kafka.group_id
    produce(cfg, [sync_request("user002", "course001", "Batch1").encode()])
    first = run_job(args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert sum(group_lag(bootstrap, group).values()) == 0  # drained: its offsets committed

    waiting = [sync_request(f"user{n:03d}", "course001", "Batch1").encode() for n in range(5)]
    produce(cfg, waiting)  # the stream is down
    assert sum(v or 0 for v in group_lag(bootstrap, group).values()) == len(waiting)

    again = run_job(args)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert sum(v or 0 for v in group_lag(bootstrap, group).values()) == 0
