"""``--max-writes-per-second``: the driver paces each writer in chunks (``io.throttle``), and
both writers share the connector's batch size and concurrency."""

from __future__ import annotations

from pyspark.sql.types import IntegerType, StringType, StructField, StructType

from enrolment_reconciliation.io.cassandra import write_options
from enrolment_reconciliation.io.throttle import MAX_CHUNKS, chunk_count, paced_write
from enrolment_reconciliation.runtime.config import load_config

KEYED = StructType([StructField("userid", StringType()), StructField("n", IntegerType())])


class FakeClock:
    """Time that moves only when slept or when a write says so."""

    def __init__(self) -> None:
        self.now, self.slept = 100.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_writes_share_the_connector_settings_and_carry_no_connector_throttle():
    options = write_options(load_config(overrides=["write.max.per.second=1000"]).write)
    assert "spark.cassandra.output.throughputMBPerSec" not in options
    assert options["spark.cassandra.output.batch.size.rows"] == "10"  # threshold.batch.write.size
    assert options["spark.cassandra.output.concurrent.writes"] == "32"
    assert options["spark.cassandra.output.ignoreNulls"] == "true"


def test_chunks_are_about_a_second_of_rows_and_bounded():
    assert chunk_count(3000, 1000) == 3
    assert chunk_count(3001, 1000) == 4
    assert chunk_count(10, 1000) == 1
    assert chunk_count(10_000_000, 500) == MAX_CHUNKS
    assert chunk_count(0, 1000) == chunk_count(5, 0) == 1


def test_every_row_is_written_once_and_no_faster_than_the_bound(spark):
    frame = spark.createDataFrame([(f"u{i}", i) for i in range(3000)], KEYED)
    clock, written = FakeClock(), []

    def write(chunk) -> None:
        written.append(sorted(r.n for r in chunk.collect()))
        clock.now += 0.2  # each chunk takes a fifth of its budget

    writes = paced_write(
        frame,
        ["userid"],
        rows=3000,
        per_second=1000,
        write=write,
        clock=clock,
        sleep=clock.sleep,
    )
    assert writes == 3 and len(written) == 3
    assert sorted(n for chunk in written for n in chunk) == list(range(3000))
    assert all(700 < len(chunk) < 1300 for chunk in written)  # a hash spreads them
    # the write ends when its 3000 rows are due at 1000 rows/s, not before
    assert clock.now - 100.0 == 3.0


def test_a_slow_writer_is_not_slowed_further(spark):
    frame = spark.createDataFrame([(f"u{i}", i) for i in range(2000)], KEYED)
    clock = FakeClock()

    def write(chunk) -> None:
        clock.now += 1.5  # slower than the bound already

    paced_write(
        frame, ["userid"], rows=2000, per_second=1000, write=write, clock=clock, sleep=clock.sleep
    )
    assert clock.slept == []


def test_unbounded_is_one_write(spark):
    frame = spark.createDataFrame([("u", 1)], KEYED)
    calls = []
    assert paced_write(frame, ["userid"], rows=1, per_second=0, write=calls.append) == 1
    assert calls == [frame]
