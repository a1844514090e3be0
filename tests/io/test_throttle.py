"""``--max-writes-per-second`` reaches both writers: the connector's throughput setting for
``user_enrolments`` and the executors' rate limiter for the map-append UPDATEs."""

from __future__ import annotations

from enrolment_reconciliation.config import load_config
from enrolment_reconciliation.io.cassandra import (
    AggregateWriteSettings,
    RateLimiter,
    enrolment_write_options,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_rate_limiter_holds_the_average_rate_and_lets_large_batches_through():
    clock = FakeClock()
    limiter = RateLimiter(100, clock=clock, sleep=clock.sleep)
    for _ in range(50):
        limiter.acquire(10)  # 500 rows at 100 rows/s
    assert 3.9 <= clock.now <= 4.1  # the first second's worth passes at once
    limiter.acquire(1000)  # a batch larger than the rate still passes, the caller waits
    assert 13.9 <= clock.now <= 14.1


def test_unthrottled_writes_have_no_throughput_setting():
    cfg = load_config()
    assert "spark.cassandra.output.throughputMBPerSec" not in enrolment_write_options(cfg)
    assert AggregateWriteSettings.from_config(cfg).rows_per_second == 0


def test_the_throttle_is_spread_over_the_write_tasks_of_both_writers():
    cfg = load_config(overrides=["write.max.per.second=1000"])
    options = enrolment_write_options(cfg, tasks=4, row_bytes=524.288)
    # 1000 rows/s of 524.288 bytes over 4 tasks: 131072 bytes = 0.125 MB/s per task
    assert options["spark.cassandra.output.throughputMBPerSec"] == "0.125000"
    assert options["spark.cassandra.output.ignoreNulls"] == "true"
    assert AggregateWriteSettings.from_config(cfg, tasks=4).rows_per_second == 250
