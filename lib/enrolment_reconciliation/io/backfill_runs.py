"""Where a sliced backfill records its runs and their finished slices, so a stopped run resumes
where it stopped.

One table next to the lease table, one partition per scope (what a run reconciles and with
which settings, as a digest): a header row per run (``slice = -1``: slice count, description,
start, and finish once every slice is done) and a row per finished slice (its counts and
finish time). Rows expire after 30 days by themselves.

Example::

    records = RunRecords(session, keyspace="sunbird_courses", table="..._backfill_progress")
    run = records.resumable(scope, max_age_hours=24) or records.start(scope, slices=8, ...)
    for index in run.pending():
        ...                                   # reconcile and apply slice `index`
        records.finish_slice(run, index, counts)
    records.finish_run(run)
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cassandra.cluster import Session

HEADER = -1
PROGRESS_TABLE_CQL = (
    "CREATE TABLE IF NOT EXISTS {keyspace}.{table} ("
    " scope text, run_id text, slice int, slices int, description text,"
    " started_at timestamp, finished_at timestamp, counts map<text, bigint>,"
    " PRIMARY KEY ((scope), run_id, slice))"
    " WITH default_time_to_live = 2592000"
)


def scope_digest(description: dict[str, Any]) -> str:
    """A short, stable id of what a run reconciles and with which settings."""
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def new_run_id(now: datetime | None = None) -> str:
    """A run id that sorts by start time."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclass
class BackfillRun:
    """A run of one scope: its slice count and the slices already finished (with counts)."""

    scope: str
    run_id: str
    slices: int
    started_at: datetime
    finished: dict[int, dict[str, int]] = field(default_factory=dict)
    resumed: bool = False

    def pending(self) -> list[int]:
        return [i for i in range(self.slices) if i not in self.finished]


class RunRecords:
    """The runs table in ``keyspace.table`` (``backfill.progress.table``; created if absent)."""

    def __init__(self, session: Session, *, keyspace: str, table: str) -> None:
        self._session = session
        session.execute(PROGRESS_TABLE_CQL.format(keyspace=keyspace, table=table), timeout=60)
        qualified = f"{keyspace}.{table}"
        self._insert = session.prepare(
            f"INSERT INTO {qualified} (scope, run_id, slice, slices, description, started_at,"
            " finished_at, counts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._finish = session.prepare(
            f"UPDATE {qualified} SET finished_at = ? WHERE scope = ? AND run_id = ? AND slice = ?"
        )
        self._runs = session.prepare(
            f"SELECT run_id, slice, slices, started_at, finished_at, counts FROM {qualified}"
            " WHERE scope = ?"
        )

    def start(
        self, scope: str, *, slices: int, description: dict[str, Any], run_id: str | None = None
    ) -> BackfillRun:
        """Record a new run of ``scope`` in ``slices`` slices."""
        now = datetime.now(UTC)
        run_id = run_id or new_run_id(now)
        text = json.dumps(description, sort_keys=True, default=str)
        self._session.execute(self._insert, (scope, run_id, HEADER, slices, text, now, None, None))
        return BackfillRun(scope, run_id, slices, now)

    def resumable(self, scope: str, *, max_age_hours: float) -> BackfillRun | None:
        """The newest unfinished run of ``scope`` started within ``max_age_hours``, if any."""
        rows = list(self._session.execute(self._runs, (scope,)))
        headers = sorted(
            (r for r in rows if r.slice == HEADER), key=lambda r: r.run_id, reverse=True
        )
        if not headers or headers[0].finished_at is not None:
            return None
        newest = headers[0]
        started = newest.started_at.replace(tzinfo=UTC)
        if datetime.now(UTC) - started > timedelta(hours=max_age_hours):
            return None
        finished = {
            r.slice: dict(r.counts or {})
            for r in rows
            if r.run_id == newest.run_id and r.slice != HEADER and r.finished_at is not None
        }
        return BackfillRun(scope, newest.run_id, newest.slices, started, finished, resumed=True)

    def finish_slice(self, run: BackfillRun, index: int, counts: dict[str, int]) -> None:
        """Record that slice ``index`` of ``run`` is written and its events published."""
        now = datetime.now(UTC)
        self._session.execute(
            self._insert,
            (run.scope, run.run_id, index, run.slices, None, run.started_at, now, counts),
        )
        run.finished[index] = dict(counts)

    def finish_run(self, run: BackfillRun) -> None:
        """Record that every slice of ``run`` is done: the next run of the scope starts anew."""
        self._session.execute(self._finish, (datetime.now(UTC), run.scope, run.run_id, HEADER))
