"""The sample generator: deterministic, carries every case the job must handle, and scales."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from devkit.sample.data import SampleData, generate_sample
from devkit.sample.hierarchy import (
    is_collection,
    is_optional,
    relation_cache_keys,
)

DO_ID = re.compile(r"^do_\d{22}$")
BATCH_ID = re.compile(r"^01\d{17}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def sample() -> SampleData:
    return generate_sample(seed=42, courses=5, users=50, batches_per_course=2)


def snapshot(s: SampleData) -> tuple[Any, ...]:
    return (
        [c.hierarchy for c in s.courses],
        [c.batch_ids for c in s.courses],
        s.relation_cache(),
        list(s.enrolments()),
        list(s.consumption()),
    )


def walk(node: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
    """(node, depth) for every node, depth first."""
    out = [(node, 0)]
    for child in node.get("children", []):
        out.extend((n, d + 1) for n, d in walk(child))
    return out


def test_same_seed_gives_identical_sample() -> None:
    assert snapshot(generate_sample(seed=7)) == snapshot(generate_sample(seed=7))


def test_iterating_twice_gives_the_same_rows(sample: SampleData) -> None:
    assert list(sample.consumption()) == list(sample.consumption())
    assert sample.user_activity(3).consumption == tuple(
        r for r in sample.consumption() if r.userid == sample.user_id(3)
    )


def test_different_seed_gives_different_sample() -> None:
    a, b = generate_sample(seed=1), generate_sample(seed=2)
    assert {c.course_id for c in a.courses}.isdisjoint({c.course_id for c in b.courses})
    assert set(a.user_ids()).isdisjoint(set(b.user_ids()))
    assert snapshot(a) != snapshot(b)


def test_ids_look_like_sunbird_ids(sample: SampleData) -> None:
    for course in sample.courses:
        assert DO_ID.match(course.course_id)
        assert all(DO_ID.match(i) for i in course.leaf_ids + course.unit_ids)
        assert len(course.batch_ids) == 2
        assert all(BATCH_ID.match(b) for b in course.batch_ids)
    user_ids = list(sample.user_ids())
    assert len(set(user_ids)) == 50
    assert all(UUID.match(u) for u in user_ids)


def test_every_course_has_nested_unit_shared_leaf_and_optional_leaf(sample: SampleData) -> None:
    for course in sample.courses:
        nodes = walk(course.hierarchy)
        units_at_depth_2 = [n for n, d in nodes if d >= 2 and is_collection(n)]
        leaf_uses = Counter(n["identifier"] for n, _ in nodes if not is_collection(n))
        assert units_at_depth_2, "nested unit"
        assert any(count > 1 for count in leaf_uses.values()), "leaf shared between units"
        assert any(is_optional(n) and not is_collection(n) for n, _ in nodes), "optional leaf"


def test_some_course_has_an_optional_unit(sample: SampleData) -> None:
    optional_units = [
        n
        for c in sample.courses
        for n, _ in walk(c.hierarchy)
        if is_optional(n) and is_collection(n)
    ]
    assert optional_units
    course = sample.courses[0]
    unit = next(n for n, _ in walk(course.hierarchy) if is_optional(n) and is_collection(n))
    assert (
        unit["identifier"]
        in course.relation_keys[f"{course.course_id}:{course.course_id}:optionalnodes"]
    )


def test_root_leaf_nodes_are_the_composed_leaves_and_keys_come_from_hierarchy(
    sample: SampleData,
) -> None:
    for course in sample.courses:
        root = course.hierarchy
        assert root["leafNodes"] == list(course.leaf_ids)
        assert root["leafNodesCount"] == len(course.leaf_ids)
        assert len(set(course.leaf_ids)) == len(course.leaf_ids)
        assert course.relation_keys == relation_cache_keys(root)
        cid = course.course_id
        assert course.relation_keys[f"{cid}:{cid}:leafnodes"] == set(course.leaf_ids)
        assert all(k.startswith(f"{cid}:") for k in course.relation_keys)
    merged = sample.relation_cache()
    assert len(merged) == sum(len(c.relation_keys) for c in sample.courses)


def test_course_sizes_vary(sample: SampleData) -> None:
    assert len({len(c.leaf_ids) for c in sample.courses}) > 1


def test_enrolment_statuses_and_completedon(sample: SampleData) -> None:
    enrolments = list(sample.enrolments())
    assert {e.status for e in enrolments} == {0, 1, 2}
    assert all((e.completedon is not None) == (e.status == 2) for e in enrolments)
    assert len({e.batchid for e in enrolments}) > len(sample.courses)
    keys = [(e.userid, e.courseid, e.batchid) for e in enrolments]
    assert len(keys) == len(set(keys))
    course_batches = {c.course_id: set(c.batch_ids) for c in sample.courses}
    assert all(e.batchid in course_batches[e.courseid] for e in enrolments)


def test_consumption_status_mix_stale_contents_and_unenrolled_users(sample: SampleData) -> None:
    rows = list(sample.consumption())
    assert {r.status for r in rows} == {0, 1, 2, None}
    keys = [(r.userid, r.courseid, r.batchid, r.contentid) for r in rows]
    assert len(keys) == len(set(keys)), "primary keys are unique"

    leaves = {c.course_id: set(c.leaf_ids) for c in sample.courses}
    assert any(r.contentid not in leaves[r.courseid] for r in rows), "content not in the course"

    enrolled = {(e.userid, e.courseid, e.batchid) for e in sample.enrolments()}
    orphans = {
        (r.userid, r.courseid) for r in rows if (r.userid, r.courseid, r.batchid) not in enrolled
    }
    assert orphans, "consumption without an enrolment"
    assert {u for u, _ in orphans} >= {sample.user_id(0)}
    assert all(r.last_completed_time is not None for r in rows if r.status == 2)


def test_tiny_sample_still_has_stale_and_unenrolled_rows() -> None:
    tiny = generate_sample(seed=3, courses=2, users=1)
    rows = list(tiny.consumption())
    enrolled = {(e.courseid, e.batchid) for e in tiny.enrolments()}
    leaves = {c.course_id: set(c.leaf_ids) for c in tiny.courses}
    assert any(r.contentid not in leaves[r.courseid] for r in rows)
    assert any((r.courseid, r.batchid) not in enrolled for r in rows)


@pytest.mark.parametrize(("courses", "users"), [(1, 0), (2, 10), (20, 2_000)])
def test_sizes_scale(courses: int, users: int) -> None:
    s = generate_sample(seed=5, courses=courses, users=users, batches_per_course=3)
    assert len(s.courses) == courses
    assert sum(1 for _ in s.user_ids()) == users
    enrolments = sum(1 for _ in s.enrolments())
    assert users <= enrolments <= 3 * users
    assert all(len(c.batch_ids) == 3 for c in s.courses)
    if users:
        assert sum(1 for _ in s.consumption()) > 0


def test_rows_are_generated_lazily() -> None:
    big = generate_sample(seed=1, courses=10, users=1_000_000)
    first = next(big.consumption())
    assert first.userid == big.user_id(0)


@pytest.mark.parametrize(
    "kwargs",
    [{"courses": 0}, {"users": -1}, {"batches_per_course": 0}, {"courses_per_user": (2, 1)}],
)
def test_invalid_sizes_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        generate_sample(**kwargs)
