"""One backfill at a time: the lease is taken, renewed and released with lightweight
transactions by its owner only, expires by itself, and a run that lost it finds out."""

from __future__ import annotations

import threading
from collections import namedtuple
from datetime import datetime

import pytest

from enrolment_reconciliation.io.lease import Lease, LeaseHeldError, LeaseLostError

Stored = namedtuple("Stored", "owner host acquired_at expires")
HolderRow = namedtuple("HolderRow", "owner host acquired_at ttl")


class Result:
    def __init__(self, applied: bool = True, rows=()) -> None:
        self.was_applied, self._rows = applied, list(rows)

    def one(self):
        return self._rows[0] if self._rows else None


class LeaseTable:
    """The lease table in memory for the four statements ``Lease`` prepares, with Cassandra's
    conditional writes and TTLs on a clock the test moves (``now``, seconds)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.rows: dict[str, Stored] = {}
        self._lock = threading.Lock()  # the heartbeat renews from its own thread

    def prepare(self, cql: str) -> str:
        return cql

    def execute(self, statement: str, params=(), timeout=None) -> Result:
        verb = statement.split()[0].lower()
        with self._lock:
            return Result() if verb == "create" else getattr(self, f"_{verb}")(statement, params)

    def _live(self, name: str) -> Stored | None:
        row = self.rows.get(name)
        return row if row is not None and row.expires > self.now else None

    def _insert(self, statement: str, params) -> Result:
        assert statement.endswith("IF NOT EXISTS USING TTL ?"), statement
        name, owner, host, acquired_at, ttl = params
        if self._live(name):
            return Result(applied=False)
        self.rows[name] = Stored(owner, host, acquired_at, self.now + ttl)
        return Result()

    def _select(self, statement: str, params) -> Result:
        assert "TTL(owner) AS ttl" in statement, statement
        row = self._live(params[0])
        if row is None:
            return Result(rows=[])
        return Result(rows=[HolderRow(*row[:3], round(row.expires - self.now))])

    def _owned(self, statement: str, name: str, owner: str) -> bool:
        assert statement.endswith("WHERE name = ? IF owner = ?"), statement
        row = self._live(name)
        return row is not None and row.owner == owner

    def _update(self, statement: str, params) -> Result:
        # UPDATE ... USING TTL ? SET owner = ?, host = ?, acquired_at = ? WHERE name = ? IF ...
        ttl, owner, host, acquired_at, name, expected = params
        if not self._owned(statement, name, expected):
            return Result(applied=False)
        self.rows[name] = Stored(owner, host, acquired_at, self.now + ttl)
        return Result()

    def _delete(self, statement: str, params) -> Result:
        name, expected = params
        if not self._owned(statement, name, expected):
            return Result(applied=False)
        del self.rows[name]
        return Result()


@pytest.fixture
def table() -> LeaseTable:
    return LeaseTable()


def lease(table: LeaseTable, seconds: int = 300) -> Lease:
    return Lease(table, keyspace="ks", table="lease", seconds=seconds)


def test_a_second_run_is_refused_naming_the_holder(table):
    first, second = lease(table), lease(table)
    first.acquire("backfill")
    assert first.owner != second.owner
    held = second.holder("backfill")
    assert held.owner == first.owner and held.expires_in == 300
    assert isinstance(held.acquired_at, datetime)
    table.now += 100
    with pytest.raises(LeaseHeldError, match=f"held by {first.owner} on .* expires in 200 s"):
        second.acquire("backfill")
    assert second.holder("backfill").owner == first.owner


def test_a_released_lease_is_free_but_only_its_owner_releases_it(table):
    first, second = lease(table), lease(table)
    first.acquire("backfill")
    second.release("backfill")
    assert second.holder("backfill").owner == first.owner
    first.release("backfill")
    assert first.holder("backfill") is None
    second.acquire("backfill")
    assert first.holder("backfill").owner == second.owner


def test_only_the_owner_renews_and_a_renewal_extends_the_lease(table):
    first, second = lease(table), lease(table)
    first.acquire("backfill")
    assert not second.renew("backfill")
    table.now += 200
    assert first.renew("backfill")
    table.now += 200  # 400 s after it was taken, 200 s after the renewal
    assert first.holder("backfill").expires_in == 100
    with pytest.raises(LeaseHeldError):
        second.acquire("backfill")


def test_an_expired_lease_is_taken_over_and_cannot_be_renewed(table):
    crashed, next_night = lease(table), lease(table)
    crashed.acquire("backfill")
    table.now += 301
    next_night.acquire("backfill")
    assert not crashed.renew("backfill")
    assert next_night.holder("backfill").owner == next_night.owner


def test_holding_releases_on_exit_even_when_the_block_fails(table):
    first = lease(table)
    with pytest.raises(ValueError), first.hold("backfill") as held:
        assert held is first and first.holder("backfill").owner == first.owner
        raise ValueError("the run failed")
    assert first.holder("backfill") is None


def test_holding_a_lease_another_run_holds_raises_and_leaves_it(table):
    first, second = lease(table), lease(table)
    first.acquire("backfill")
    with pytest.raises(LeaseHeldError), second.hold("backfill"):
        pytest.fail("the block ran without the lease")
    assert first.holder("backfill").owner == first.owner


def test_a_run_that_lost_the_lease_stops_at_its_next_check(table):
    first = lease(table)
    first.check()
    first.lost.set()
    with pytest.raises(LeaseLostError):
        first.check()


def test_the_heartbeat_notices_a_lease_taken_over_and_keeps_the_new_holder_s(table):
    slow, other = lease(table, seconds=1), lease(table)  # renewed every third of a second
    with slow.hold("backfill"):
        table.now += 2  # expired: the renewals stopped reaching Cassandra, say
        other.acquire("backfill")
        assert slow.lost.wait(timeout=10)
        with pytest.raises(LeaseLostError):
            slow.check()
    assert other.holder("backfill").owner == other.owner  # not released by the loser
