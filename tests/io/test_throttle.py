"""``--max-writes-per-second`` reaches both writers through the connector's own throughput
setting, and both share the batch size and concurrency."""

from __future__ import annotations

from enrolment_reconciliation.config import load_config
from enrolment_reconciliation.io.cassandra import write_options


def test_unthrottled_writes_have_no_throughput_setting():
    options = write_options(load_config())
    assert "spark.cassandra.output.throughputMBPerSec" not in options
    assert options["spark.cassandra.output.batch.size.rows"] == "10"  # threshold.batch.write.size
    assert options["spark.cassandra.output.concurrent.writes"] == "32"
    assert options["spark.cassandra.output.ignoreNulls"] == "true"


def test_the_throttle_is_spread_over_the_write_tasks():
    cfg = load_config(overrides=["write.max.per.second=1000"])
    options = write_options(cfg, tasks=4, row_bytes=524.288)
    # 1000 rows/s of 524.288 bytes over 4 tasks: 131072 bytes = 0.125 MB/s per task
    assert options["spark.cassandra.output.throughputMBPerSec"] == "0.125000"
