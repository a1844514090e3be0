"""How a backfill divides its users into slices."""

from __future__ import annotations

from pyspark.sql import functions as F

from enrolment_reconciliation.core.slices import SLICE, slices_for, with_slice


def test_every_user_falls_in_exactly_one_slice_the_same_on_every_run(spark):
    users = spark.createDataFrame([(f"user-{i}",) for i in range(400)], "userid string")
    first = {r.userid: r[SLICE] for r in with_slice(users, 4).collect()}
    again = {r.userid: r[SLICE] for r in with_slice(users.orderBy(F.desc("userid")), 4).collect()}
    assert first == again and len(first) == 400
    sizes = [sum(1 for s in first.values() if s == i) for i in range(4)]
    assert set(first.values()) == {0, 1, 2, 3}
    assert min(sizes) > 400 / 4 * 0.7, sizes  # a hash spreads users about evenly


def test_one_slice_holds_everyone():
    assert slices_for(0, 128) == 1
    assert slices_for(100, 128) == 1
    assert slices_for(129, 128) == 2
    assert slices_for(10 * 128, 128) == 10
