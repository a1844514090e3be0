"""Acceptance cases of docs/behaviour.md §12.2-§12.10 (ER-1 .. ER-9) and §12.11-§12.14 (optional
nodes, AAU) through `reconcile`.

Each case builds the batch's inputs as literal frames (the relation cache as the Redis keys of
the original fixtures) and compares whole output frames with the expected rows written out.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from pyspark.sql import functions as F

from enrolment_reconciliation.core.progress import ROUTE
from enrolment_reconciliation.core.reconcile import BatchInputs, ReconcileSettings, reconcile
from tests.helpers import (
    BATCH,
    CASE_2,
    CASE_2_ROWS,
    COURSE,
    NOW,
    NOW_NAIVE,
    USER,
    assert_updates,
    expected_updates,
    parsed_requests,
    progress,
    structure,
    sync_request,
)

# ER-1: the original ER test's EVENT_1 and its Redis data.
ER1_USER, ER1_BATCH, ER1_COURSE = (
    "8454cb21-3ce9-4e30-85b5-fade097880d8",
    "0126083288437637121",
    "do_1127212344324751361295",
)
C299, C300, C301 = (f"do_11260735471149056012{n}" for n in (299, 300, 301))
U1, U2, U3 = (f"do_course_unit{n}" for n in (1, 2, 3))
ER1_KEYS = {
    f"{ER1_COURSE}:{ER1_COURSE}:leafnodes": {C299, C300, C301},
    f"{ER1_COURSE}:{U1}:leafnodes": {C299},
    f"{ER1_COURSE}:{U2}:leafnodes": {C300},
    f"{ER1_COURSE}:{U3}:leafnodes": {C301, C300},
    f"{ER1_COURSE}:{C299}:ancestors": {U1, ER1_COURSE},
    f"{ER1_COURSE}:{C300}:ancestors": {U2, U3, ER1_COURSE},
    f"{ER1_COURSE}:{C301}:ancestors": {U3, ER1_COURSE},
}
ER1_ROWS = [
    (ER1_USER, ER1_COURSE, ER1_BATCH, C299, 2, 3, 1),
    (ER1_USER, ER1_COURSE, ER1_BATCH, C300, 2, 2, 2),
    (ER1_USER, ER1_COURSE, ER1_BATCH, C301, 1, 0, 1),
]

# The AAU fixture adds R4 (done), with optionalnodes only on unit2.
AAU_KEYS = {
    **CASE_2,
    f"{COURSE}:{COURSE}:leafnodes": {"R1", "R2", "R3", "R4"},
    f"{COURSE}:unit2:leafnodes": {"R2", "R3", "R4"},
    f"{COURSE}:unit2:optionalnodes": {"R4"},
    f"{COURSE}:R4:ancestors": {"unit2", COURSE},
}
AAU_ROWS = [*CASE_2_ROWS, (USER, COURSE, BATCH, "R4", 2)]

EXCLUDE = ReconcileSettings(exclude_optional_nodes=True)
INCLUDE = ReconcileSettings(exclude_optional_nodes=False)


def run(spark, requests, rows, keys, enrolment_rows=(), statuses=None, settings=EXCLUDE):
    courses = {r[1] for r in rows}
    inputs = BatchInputs(
        progress=progress(spark, rows, enrolment_rows),
        structure=structure(spark, keys, statuses, courses=courses),
        requests=parsed_requests(spark, requests),
    )
    return reconcile(inputs, settings, now=NOW)


def agg_rows(result) -> set[tuple]:
    """(activity_id, user_id, context_id, completedCount) of every aggregate row."""
    rows = result.activity_aggregates.collect()
    for r in rows:
        assert r.activity_type == "Course"
        assert r.agg_last_updated == {"completedCount": NOW_NAIVE}
        assert set(r.aggregates) == {"completedCount"}
    return {(r.activity_id, r.user_id, r.context_id, r.aggregates["completedCount"]) for r in rows}


@pytest.mark.parametrize("settings", [EXCLUDE, INCLUDE], ids=["exclude-optional", "all-leaves"])
def test_er1_partial_progress_without_enrolment_writes_only_aggregates(spark, settings):
    result = run(
        spark,
        [sync_request(ER1_USER, ER1_COURSE, ER1_BATCH)],
        ER1_ROWS,
        ER1_KEYS,
        settings=settings,
    )
    ctx = f"cb:{ER1_BATCH}"
    assert agg_rows(result) == {
        (ER1_COURSE, ER1_USER, ctx, 2.0),
        (U1, ER1_USER, ctx, 1.0),
        (U2, ER1_USER, ctx, 1.0),
        (U3, ER1_USER, ctx, 1.0),
    }
    assert result.enrolment_updates.count() == 0
    assert result.events.count() == 0
    assert result.failed.count() == 0


def test_er1_with_an_in_progress_enrolment_updates_status_progress_and_contentstatus(spark):
    result = run(
        spark,
        [sync_request(ER1_USER, ER1_COURSE, ER1_BATCH)],
        ER1_ROWS,
        ER1_KEYS,
        enrolment_rows=[(ER1_USER, ER1_COURSE, ER1_BATCH, 0, None)],
    )
    assert_updates(
        result.enrolment_updates,
        expected_updates(
            spark,
            [
                (
                    ER1_USER,
                    ER1_COURSE,
                    ER1_BATCH,
                    1,
                    2,
                    {C299: 2, C300: 2, C301: 1},
                    None,
                    NOW_NAIVE,
                    False,
                ),
            ],
        ),
    )
    assert result.events.count() == 0


def test_er2_other_action_is_skipped_and_produces_nothing(spark):
    result = run(
        spark,
        [sync_request(ER1_USER, ER1_COURSE, ER1_BATCH, action="batch-enrolment-update")],
        [],
        ER1_KEYS,
    )
    assert result.activity_aggregates.count() == 0
    assert result.failed.count() == 0


@pytest.mark.parametrize("settings", [EXCLUDE, INCLUDE], ids=["exclude-optional", "all-leaves"])
def test_er3_all_leaves_done_completes_enrolment_and_emits_audit_and_certificate(spark, settings):
    result = run(
        spark,
        [sync_request(USER, COURSE, BATCH)],
        CASE_2_ROWS,
        CASE_2,
        enrolment_rows=[(USER, COURSE, BATCH, 1, None)],
        settings=settings,
    )
    assert agg_rows(result) == {
        (COURSE, USER, "cb:Batch1", 3.0),
        ("unit1", USER, "cb:Batch1", 2.0),
        ("unit2", USER, "cb:Batch1", 2.0),
    }
    assert_updates(
        result.enrolment_updates,
        expected_updates(
            spark,
            [(USER, COURSE, BATCH, 2, 3, {"R1": 2, "R2": 2, "R3": 2}, NOW_NAIVE, NOW_NAIVE, True)],
        ),
    )
    events = {r.kind: json.loads(r.value) for r in result.events.collect()}
    assert set(events) == {"audit", "certificate"}
    cert = events["certificate"]
    assert cert["object"] == {"id": "Batch1_course001", "type": "CourseCertificateGeneration"}
    assert cert["edata"]["userIds"] == ["user001"]
    assert events["audit"]["edata"] == {
        "props": ["status", "completedon"],
        "type": "enrol-complete",
    }


def test_er4_no_consumption_rows_writes_and_emits_nothing(spark):
    keys = {
        "C11:C11:leafnodes": {"R11"},
        "C11:R11:ancestors": {"C11"},
    }
    result = run(
        spark,
        [sync_request("U11", "C11", "B11")],
        [],
        keys,
        enrolment_rows=[("U11", "C11", "B11", 1, None)],
    )
    assert result.activity_aggregates.count() == 0
    assert result.enrolment_updates.count() == 0
    assert result.events.count() == 0
    assert result.failed.count() == 0


def test_er5_missing_leafnodes_of_a_published_course_goes_to_failed_and_writes_nothing(spark):
    keys = {k: v for k, v in CASE_2.items() if not k.endswith(f"{COURSE}:leafnodes")}
    rows = [(USER, COURSE, BATCH, "R1", 2, 1, 1)]
    result = run(
        spark,
        [sync_request(USER, COURSE, BATCH)],
        rows,
        keys,
        enrolment_rows=[(USER, COURSE, BATCH, 1, None)],
        statuses={COURSE: "Live"},
    )
    assert result.activity_aggregates.count() == 0
    assert result.enrolment_updates.count() == 0
    assert result.events.count() == 0
    failed = [(r.reason, json.loads(r.value)) for r in result.failed.collect()]
    reason = "leaf nodes are not available for a published collection: course001"
    assert failed == [
        (
            reason,
            {
                "userId": USER,
                "batchId": BATCH,
                "courseId": COURSE,
                "contents": {"R1": {"status": 2, "viewCount": 1, "completedCount": 1}},
                "reason": reason,
            },
        )
    ]


def test_er6_missing_leafnodes_of_a_retired_course_writes_only_unit_rows(spark):
    keys = {k: v for k, v in CASE_2.items() if not k.endswith(f"{COURSE}:leafnodes")}
    result = run(
        spark,
        [sync_request(USER, COURSE, BATCH)],
        CASE_2_ROWS,
        keys,
        enrolment_rows=[(USER, COURSE, BATCH, 1, None)],
        statuses={COURSE: "Retired"},
    )
    # only the course's own leafnodes key is missing: the unit keys still count
    assert agg_rows(result) == {
        ("unit1", USER, "cb:Batch1", 2.0),
        ("unit2", USER, "cb:Batch1", 2.0),
    }
    assert result.enrolment_updates.count() == 0
    assert result.events.count() == 0
    assert result.failed.count() == 0
    routes = result.enriched.select("courseId", ROUTE).collect()
    assert [tuple(r) for r in routes] == [(COURSE, "retired")]


def test_unknown_collection_goes_to_failed_with_the_search_reason(spark):
    keys = {}
    rows = [(USER, COURSE, BATCH, "R1", 2)]
    result = run(spark, [sync_request(USER, COURSE, BATCH)], rows, keys, statuses={COURSE: None})
    assert [r.reason for r in result.failed.collect()] == [
        "There are no published or retired collection with id: course001"
    ]


def test_er7_completed_enrolment_is_not_touched_when_processed_filter_is_on(spark):
    result = run(
        spark,
        [sync_request(USER, COURSE, BATCH)],
        CASE_2_ROWS,
        CASE_2,
        enrolment_rows=[(USER, COURSE, BATCH, 2, datetime(2026, 1, 1))],
    )
    assert len(agg_rows(result)) == 3
    assert result.enrolment_updates.count() == 0
    assert result.events.count() == 0


def test_completed_enrolment_is_never_downgraded_when_processed_filter_is_off(spark):
    rows = [(USER, COURSE, BATCH, "R1", 2), (USER, COURSE, BATCH, "R2", 1)]
    result = run(
        spark,
        [sync_request(USER, COURSE, BATCH)],
        rows,
        CASE_2,
        enrolment_rows=[(USER, COURSE, BATCH, 2, datetime(2026, 1, 1))],
        settings=ReconcileSettings(filter_processed_enrolments=False),
    )
    # status stays 2, completedon stays unset (= unchanged), no new events
    assert_updates(
        result.enrolment_updates,
        expected_updates(
            spark, [(USER, COURSE, BATCH, 2, 1, {"R1": 2, "R2": 1}, None, NOW_NAIVE, False)]
        ),
    )
    assert result.events.count() == 0


def test_er8_malformed_json_goes_to_failed_and_the_valid_request_is_applied(spark):
    result = run(
        spark,
        ["{not json", sync_request(USER, COURSE, BATCH)],
        CASE_2_ROWS,
        CASE_2,
        enrolment_rows=[(USER, COURSE, BATCH, 1, None)],
    )
    assert [r.reason for r in result.failed.collect()] == ["malformed JSON"]
    assert result.enrolment_updates.count() == 1


@pytest.mark.parametrize(
    ("settings", "unit2"), [(INCLUDE, 3.0), (EXCLUDE, 2.0)], ids=["er-rule", "aau-rule"]
)
def test_er9_unit_optionalnodes_are_subtracted_only_when_excluding(spark, settings, unit2):
    result = run(
        spark,
        [sync_request(USER, COURSE, BATCH)],
        AAU_ROWS,
        AAU_KEYS,
        enrolment_rows=[(USER, COURSE, BATCH, 1, None)],
        settings=settings,
    )
    assert agg_rows(result) == {
        (COURSE, USER, "cb:Batch1", 4.0),
        ("unit1", USER, "cb:Batch1", 2.0),
        ("unit2", USER, "cb:Batch1", unit2),
    }
    # AAU-1: no course-level optionalnodes, so R4 is required and the course completes 4/4
    assert [(r.status, r.progress) for r in result.enrolment_updates.collect()] == [(2, 4)]


@pytest.mark.parametrize(
    ("settings", "status", "progress", "events"),
    [(EXCLUDE, 2, 2, 2), (INCLUDE, 1, 2, 0)],
    ids=["exclude-optional", "all-leaves"],
)
def test_optional_leaf_does_not_block_completion(spark, settings, status, progress, events):
    keys = {**CASE_2, f"{COURSE}:{COURSE}:optionalnodes": {"R3"}}
    rows = [(USER, COURSE, BATCH, "R1", 2), (USER, COURSE, BATCH, "R2", 2)]
    result = run(
        spark,
        [sync_request(USER, COURSE, BATCH)],
        rows,
        keys,
        enrolment_rows=[(USER, COURSE, BATCH, 1, None)],
        settings=settings,
    )
    assert [(r.status, r.progress) for r in result.enrolment_updates.collect()] == [
        (status, progress)
    ]
    assert result.events.count() == events


def test_aau2_flushed_cache_and_live_course_fails_the_request_only(spark):
    rows = [(USER, COURSE, BATCH, r, 2) for r in ("R1", "R2", "R3")]
    other = [("user002", "course002", "Batch2", "X1", 2)]
    keys = {"course002:course002:leafnodes": {"X1"}}
    result = run(
        spark,
        [sync_request(USER, COURSE, BATCH), sync_request("user002", "course002", "Batch2")],
        rows + other,
        keys,
        statuses={COURSE: "Live"},
    )
    assert agg_rows(result) == {("course002", "user002", "cb:Batch2", 1.0)}
    assert result.failed.count() == 1


@pytest.mark.parametrize(
    ("settings", "complete"), [(EXCLUDE, True), (INCLUDE, False)], ids=["exclude", "include"]
)
def test_course_whose_leaves_are_all_optional(spark, settings, complete):
    keys = {
        "C:C:leafnodes": {"L1", "L2"},
        "C:C:optionalnodes": {"L1", "L2"},
        "C:L1:ancestors": {"C"},
    }
    rows = [("u", "C", "b", "L1", 1)]
    result = run(
        spark,
        [sync_request("u", "C", "b")],
        rows,
        keys,
        enrolment_rows=[("u", "C", "b", 0, None)],
        settings=settings,
    )
    progress = result.course_progress.select("requiredCount", "completedCount", "complete")
    assert [tuple(r) for r in progress.collect()] == [(0 if complete else 2, 0, complete)]


def test_edge_cases_in_one_course(spark):
    """Content not in the course, status 0 and null, a leaf shared by two units, nested units,
    a unit without a leafnodes key, one user in two batches."""
    keys = {
        "C:C:leafnodes": {"L1", "L2", "L3", "L4"},
        "C:U1:leafnodes": {"L1", "L2", "L3"},
        "C:U1a:leafnodes": {"L2", "L3"},  # nested in U1
        "C:U2:leafnodes": {"L1", "L4"},  # L1 shared by U1 and U2
        # U3 has no leafnodes key
        "C:L1:ancestors": {"U1", "U2", "C"},
        "C:L2:ancestors": {"U1a", "U1", "C"},
        "C:L3:ancestors": {"U1a", "U1", "C"},
        "C:L4:ancestors": {"U2", "U3", "C"},
    }
    rows = [
        ("u", "C", "b1", "L1", 2),
        ("u", "C", "b1", "L2", 0),
        ("u", "C", "b1", "L3", None),  # null status reads as 1
        ("u", "C", "b1", "L4", 2),
        ("u", "C", "b1", "GONE", 2),  # no longer in the course
        ("u", "C", "b2", "L1", 2),
    ]
    result = run(
        spark,
        [sync_request("u", "C", "b1"), sync_request("u", "C", "b2")],
        rows,
        keys,
        enrolment_rows=[("u", "C", "b1", 1, None), ("u", "C", "b2", 1, None)],
    )
    assert agg_rows(result) == {
        ("C", "u", "cb:b1", 2.0),
        ("U1", "u", "cb:b1", 1.0),
        ("U1a", "u", "cb:b1", 0.0),
        ("U2", "u", "cb:b1", 2.0),
        ("U3", "u", "cb:b1", 0.0),
        ("C", "u", "cb:b2", 1.0),
        ("U1", "u", "cb:b2", 1.0),
        ("U2", "u", "cb:b2", 1.0),
    }
    assert_updates(
        result.enrolment_updates,
        expected_updates(
            spark,
            [
                (
                    "u",
                    "C",
                    "b1",
                    1,
                    2,
                    {"GONE": 2, "L1": 2, "L2": 0, "L3": 1, "L4": 2},
                    None,
                    NOW_NAIVE,
                    False,
                ),
                ("u", "C", "b2", 1, 1, {"L1": 2}, None, NOW_NAIVE, False),
            ],
        ),
    )


def test_module_aggregates_can_be_switched_off(spark):
    result = run(
        spark,
        [sync_request(USER, COURSE, BATCH)],
        CASE_2_ROWS,
        CASE_2,
        settings=ReconcileSettings(module_aggs_enabled=False),
    )
    assert agg_rows(result) == {(COURSE, USER, "cb:Batch1", 3.0)}


def test_thousand_requests_for_a_hundred_courses_in_one_batch(spark):
    """Every user completes a pseudo-random subset of 5 leaves; expected counts recomputed
    independently in Python from the same literal data."""
    keys, rows, requests, expected = {}, [], [], set()
    for c in range(100):
        course = f"do_c{c}"
        leaves = {f"{course}_l{i}" for i in range(5)}
        keys[f"{course}:{course}:leafnodes"] = leaves
        keys[f"{course}:{course}:optionalnodes"] = {f"{course}_l4"}
    for u in range(1000):
        user, course = f"user{u}", f"do_c{u % 100}"
        done = [i for i in range(5) if (u * 7 + i * 3) % 4 != 0]
        for i in range(5):
            rows.append((user, course, "b1", f"{course}_l{i}", 2 if i in done else 1))
        requests.append(sync_request(user, course, "b1"))
        expected.add((course, user, "cb:b1", float(len([i for i in done if i != 4]))))
    settings = ReconcileSettings(module_aggs_enabled=False)
    result = run(spark, requests, rows, keys, settings=settings)
    assert agg_rows(result) == expected
    completed = result.course_progress.where(F.col("complete")).count()
    assert completed == sum(
        1 for u in range(1000) if all((u * 7 + i * 3) % 4 != 0 for i in range(4))
    )
