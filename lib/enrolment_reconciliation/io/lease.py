"""One backfill at a time: a lease row in Cassandra, taken and renewed with lightweight
transactions, that expires by itself (a TTL) so a crashed run does not block the next night.

Example::

    lease = Lease(session, keyspace="sunbird_courses", table="enrolment_reconciliation_lease",
                  seconds=300)
    with lease.hold("backfill"):      # raises LeaseHeldError if another run holds it
        ...                           # renewed every seconds/3 in the background
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from cassandra.cluster import Session

from enrolment_reconciliation.runtime.faults import InfrastructureError

log = logging.getLogger(__name__)

LEASE_TABLE_CQL = (
    "CREATE TABLE IF NOT EXISTS {keyspace}.{table} ("
    " name text PRIMARY KEY, owner text, host text, acquired_at timestamp)"
)


class LeaseHeldError(RuntimeError):
    """Another run holds the lease."""


class LeaseLostError(InfrastructureError):
    """The lease expired while the run held it (its renewals did not reach Cassandra) and another
    run took it over: this run stops, resumable (exit 4)."""


@dataclass(frozen=True)
class Holder:
    owner: str
    host: str
    acquired_at: datetime | None
    expires_in: int | None


class Lease:
    """A named lease in ``keyspace.table``, held by this process (``owner``) for ``seconds``."""

    def __init__(self, session: Session, *, keyspace: str, table: str, seconds: int) -> None:
        self._session = session
        self._seconds = seconds
        self.owner = f"{socket.gethostname()}-{uuid.uuid4().hex[:12]}"
        self.lost = threading.Event()
        session.execute(LEASE_TABLE_CQL.format(keyspace=keyspace, table=table), timeout=60)
        qualified = f"{keyspace}.{table}"
        self._insert = session.prepare(
            f"INSERT INTO {qualified} (name, owner, host, acquired_at) VALUES (?, ?, ?, ?)"
            " IF NOT EXISTS USING TTL ?"
        )
        self._renew = session.prepare(
            f"UPDATE {qualified} USING TTL ? SET owner = ?, host = ?, acquired_at = ?"
            " WHERE name = ? IF owner = ?"
        )
        self._release = session.prepare(f"DELETE FROM {qualified} WHERE name = ? IF owner = ?")
        self._holder = session.prepare(
            f"SELECT owner, host, acquired_at, TTL(owner) AS ttl FROM {qualified} WHERE name = ?"
        )

    def holder(self, name: str) -> Holder | None:
        row = self._session.execute(self._holder, (name,)).one()
        if row is None:
            return None
        return Holder(row.owner, row.host, row.acquired_at, row.ttl)

    def acquire(self, name: str) -> None:
        """Take the lease or raise :class:`LeaseHeldError` naming who holds it."""
        now = datetime.now(UTC)
        result = self._session.execute(
            self._insert, (name, self.owner, socket.gethostname(), now, self._seconds)
        )
        if not result.was_applied:
            held = self.holder(name)
            who = (
                f"{held.owner} on {held.host} since {held.acquired_at:%Y-%m-%d %H:%M:%S} UTC, "
                f"expires in {held.expires_in} s unless renewed"
                if held and held.acquired_at
                else "another run"
            )
            raise LeaseHeldError(f"another {name} is running: the lease is held by {who}")
        log.info("lease %s taken by %s for %d s", name, self.owner, self._seconds)

    def renew(self, name: str) -> bool:
        result = self._session.execute(
            self._renew,
            (self._seconds, self.owner, socket.gethostname(), datetime.now(UTC), name, self.owner),
        )
        return bool(result.was_applied)

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if the lease was lost while held."""
        if self.lost.is_set():
            raise LeaseLostError("the lease was lost during the run (expired and taken over)")

    def release(self, name: str) -> None:
        self._session.execute(self._release, (name, self.owner))

    @contextmanager
    def hold(self, name: str) -> Iterator[Lease]:
        """Hold the lease for the block, renewing it every third of its lifetime."""
        self.acquire(name)
        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(self._seconds / 3):
                try:
                    if not self.renew(name):
                        log.error("lease %s was lost (expired and taken over)", name)
                        self.lost.set()
                        return
                except Exception as error:  # a failed renewal is retried on the next beat
                    log.warning("lease %s renewal failed: %s", name, error)

        thread = threading.Thread(target=heartbeat, name=f"lease-{name}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=5)
            if not self.lost.is_set():
                self.release(name)
