"""Planning a backfill run, with no side effects: its scope, how many slices, what a resumed
run keeps.

A run is identified by its *scope*: what it reconciles and with which settings. A stopped run is
resumed only by a run of the same scope (the same slices then hold the same users). A new run
divides its users into slices: as many as ``backfill.slices`` says, or, when that is 0, as many
as keep each slice near ``BYTES_PER_SLICE`` of consumption by Cassandra's size estimates, and
never fewer than one per ``USERS_PER_SLICE`` users. Size estimates are refreshed by each node
every few minutes from the data on disk, so right after a load they are empty or low; the users
are counted exactly as the run reads them, so an unknown size still slices safely. The run says
which measure gave its count.

Example::

    choose_slice_count(configured=0, estimated_bytes=0.0, users=40_000)
    # SliceCount(count=4, basis='users', ...)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from enrolment_reconciliation.io.backfill_runs import BackfillRun, scope_digest
from enrolment_reconciliation.modes.backfill.options import BackfillOptions
from enrolment_reconciliation.runtime.config import JobConfig

BYTES_PER_SLICE = 128 * 2**20  # about a million consumption rows
# A learner on a large deployment holds a hundred or more consumption rows (the `large` benchmark's
# sample has that mix, docs/benchmarks.md): 10,000 learners are about one slice's bytes.
USERS_PER_SLICE = 10_000
OUTBOX_PREFIX = "backfill"

CONFIGURED, SIZE_ESTIMATES, USERS = "configured", "size-estimates", "users"


@dataclass(frozen=True)
class SliceCount:
    """How many slices a new run has, and which measure decided it."""

    count: int
    basis: str  # configured | size-estimates | users
    estimated_bytes: float | None = None
    users: int | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "slices": self.count,
            "basis": self.basis,
            "estimatedBytes": self.estimated_bytes,
            "users": self.users,
        }


def choose_slice_count(configured: int, estimated_bytes: float, users: int) -> SliceCount:
    """The slices of a new run: ``configured`` when positive, else the larger of the count by
    size estimates (``estimated_bytes``, 0 when unknown) and the count by ``users``."""
    if configured > 0:
        return SliceCount(configured, CONFIGURED)
    by_size = max(1, math.ceil(estimated_bytes / BYTES_PER_SLICE)) if estimated_bytes > 0 else 0
    by_users = max(1, math.ceil(users / USERS_PER_SLICE))
    if by_size >= by_users:
        return SliceCount(by_size, SIZE_ESTIMATES, estimated_bytes, users)
    return SliceCount(by_users, USERS, estimated_bytes, users)


@dataclass(frozen=True)
class Scope:
    """What a run reconciles and with which settings; runs resume only within one scope."""

    description: dict[str, Any]

    @classmethod
    def of(cls, cfg: JobConfig, options: BackfillOptions) -> Scope:
        return cls(
            {
                **options.describe(),
                "keyspace": cfg.cassandra.keyspace,
                "slices": cfg.backfill.slices,
                "excludeOptionalNodes": cfg.activity.exclude_optional_nodes,
                "moduleAggs": cfg.activity.module_aggs_enabled,
                "filterProcessedEnrolments": cfg.activity.filter_processed_enrolments,
            }
        )

    @property
    def digest(self) -> str:
        return scope_digest(self.description)


def outbox_batch(run: BackfillRun, index: int) -> str:
    """The outbox folder of a slice: the same for the same slice of a retried or resumed run,
    so the events an interrupted attempt staged are merged into the next one's; named by the
    run, so another run's folder is never taken for one of this run's."""
    return f"{run_outbox_prefix(run)}{index:05d}-of-{run.slices:05d}"


def run_outbox_prefix(run: BackfillRun) -> str:
    return f"{OUTBOX_PREFIX}-{run.run_id}-"


def compares_staged_aggregates(narrowed: bool) -> bool:
    """A run of the whole table compares with a staged copy of the aggregates (one scan); a
    narrowed scope, whose rows may be a small share of the table, compares by key."""
    return not narrowed
