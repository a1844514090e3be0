"""Planning a backfill: how many slices a new run has and which measure decided it, the scope
a run resumes within, a slice's outbox folder."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from enrolment_reconciliation.io.backfill_runs import BackfillRun
from enrolment_reconciliation.modes.backfill.options import BackfillOptions
from enrolment_reconciliation.modes.backfill.plan import (
    BYTES_PER_SLICE,
    CONFIGURED,
    SIZE_ESTIMATES,
    USERS,
    USERS_PER_SLICE,
    Scope,
    SliceCount,
    choose_slice_count,
    compares_staged_aggregates,
    outbox_batch,
    run_outbox_prefix,
)
from enrolment_reconciliation.runtime.config import load_config


def test_a_configured_slice_count_wins():
    assert choose_slice_count(7, 100 * BYTES_PER_SLICE, 10**6) == SliceCount(7, CONFIGURED)


def test_size_estimates_decide_when_they_ask_for_more_slices():
    chosen = choose_slice_count(0, 10.5 * BYTES_PER_SLICE, 3 * USERS_PER_SLICE)
    assert chosen == SliceCount(11, SIZE_ESTIMATES, 10.5 * BYTES_PER_SLICE, 3 * USERS_PER_SLICE)
    # a tie goes to the estimates, and a few bytes are one slice
    assert choose_slice_count(0, 2 * BYTES_PER_SLICE, 2 * USERS_PER_SLICE).basis == SIZE_ESTIMATES
    assert choose_slice_count(0, 1.0, 10) == SliceCount(1, SIZE_ESTIMATES, 1.0, 10)


@pytest.mark.parametrize(
    ("estimated_bytes", "users", "count"),
    [
        (0.0, 40_000, 4),  # no estimates yet (right after a load)
        (2 * BYTES_PER_SLICE, 45_000, 5),  # estimates lower than the users' share
        (0.0, 1, 1),
        (0.0, 0, 1),  # no users at all: still one slice
    ],
)
def test_users_decide_when_the_estimates_are_empty_or_low(estimated_bytes, users, count):
    chosen = choose_slice_count(0, estimated_bytes, users)
    assert chosen == SliceCount(count, USERS, estimated_bytes, users)
    assert chosen.describe() == {
        "slices": count,
        "basis": "users",
        "estimatedBytes": estimated_bytes,
        "users": users,
    }


def test_the_scope_digest_is_stable_and_names_what_is_reconciled_and_how():
    cfg, options = load_config(), BackfillOptions(courses=("do_1",))
    digest = Scope.of(cfg, options).digest
    assert Scope.of(load_config(), BackfillOptions(courses=("do_1",))).digest == digest
    # how the run is reported or whether it resumes does not change what it reconciles
    same = BackfillOptions(courses=("do_1",), summary_file="/tmp/summary.json", restart=True)
    assert Scope.of(cfg, same).digest == digest
    assert Scope.of(cfg.with_overrides("backfill.lease.seconds=60"), options).digest == digest

    other_scopes = [
        BackfillOptions(),
        BackfillOptions(courses=("do_2",)),
        BackfillOptions(courses=("do_1",), batches=("b1",)),
        BackfillOptions(courses=("do_1",), users_file="/data/users.txt"),
        BackfillOptions(courses=("do_1",), repair_certificates=True),
    ]
    other_settings = [
        "backfill.slices=4",
        "lms-cassandra.keyspace=elsewhere",
        "activity.exclude.optional.nodes=false",
        "activity.module.aggs.enabled=false",
        "activity.filter.processed.enrolments=false",
    ]
    digests = {Scope.of(cfg, o).digest for o in other_scopes}
    digests |= {Scope.of(cfg.with_overrides(s), options).digest for s in other_settings}
    assert len(digests) == len(other_scopes) + len(other_settings)
    assert digest not in digests


def test_a_slice_s_outbox_folder_is_the_same_for_every_attempt_of_that_slice():
    now = datetime.now(UTC)
    first = BackfillRun("scope", "20261202T010000-aaaaaa", 12, now)
    resumed = BackfillRun("scope", "20261202T010000-aaaaaa", 12, now, resumed=True)
    named = "backfill-20261202T010000-aaaaaa-00003-of-00012"
    assert outbox_batch(first, 3) == outbox_batch(resumed, 3) == named
    assert outbox_batch(first, 11).endswith("-00011-of-00012")
    # another run's folder is never one of this run's (a restarted run settles it instead)
    other = BackfillRun("scope", "20261202T020000-bbbbbb", 12, now)
    assert outbox_batch(other, 3) != named
    assert outbox_batch(first, 3).startswith(run_outbox_prefix(first))
    assert not outbox_batch(other, 3).startswith(run_outbox_prefix(first))


def test_only_a_run_of_the_whole_table_compares_with_staged_aggregates():
    assert compares_staged_aggregates(narrowed=False)
    assert not compares_staged_aggregates(narrowed=True)
