"""Seeded, deterministic sample data: courses, relation-cache keys, enrolments and consumption.

Pure Python (no I/O, no Spark). Course hierarchies are built eagerly (they are small); the rows of
users are generated lazily, one user at a time from a per-user random stream, so a sample of
100k users costs no more memory than one user's rows and any user's rows can be regenerated alone.
The same arguments always give the same data.

Every course has top-level units, a nested unit, a leaf shared by two units and an optional leaf;
most courses also have leaves directly under the root and an optional unit, some an empty unit.
Users are enrolled in 1-3 courses (one batch each) with status 0, 1 or 2; consumption rows have
status 2, 1, 0 or null, some name contents that are not in the course (stale rows), and some users
consume in a course they are not enrolled in. Every other batch of a course has a certificate
template (``course_batch``), and half of the completed learners of those batches hold their
certificate, so a certificate repair has learners to serve and learners to leave alone. User 0
always has a stale row and (given two or more courses) such an orphan course, so even tiny
samples carry both cases.

Example::

    sample = generate_sample(seed=7, courses=2, users=10)
    sample.courses[0].course_id            # 'do_21...'
    next(sample.enrolments()).status       # 0, 1 or 2
    len(sample.relation_cache())           # number of Redis keys to write
"""

from __future__ import annotations

import random
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from devkit.sample.hierarchy import (
    Node,
    collection,
    compose_leaf_nodes,
    content,
    relation_cache_keys,
)

DEFAULT_BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)

# Leaf mime types seen in Sunbird courses (anything that is not a content-collection is a leaf).
LEAF_MIME_TYPES = (
    "application/pdf",
    "video/mp4",
    "video/x-youtube",
    "application/vnd.ekstep.ecml-archive",
    "application/vnd.ekstep.h5p-archive",
    "application/vnd.ekstep.html-archive",
    "application/vnd.sunbird.questionset",
)
# Share of in-progress enrolments whose consumption is already complete: the learners who ask
# for a sync because their course progress did not update.
STUCK_RATE = 0.2
ENROLMENT_STATUS_WEIGHTS = ((0, 0.25), (1, 0.5), (2, 0.25))
# Consumption status of a content touched by an in-progress learner; None is a null column.
CONSUMPTION_STATUS_WEIGHTS: tuple[tuple[int | None, float], ...] = (
    (2, 0.5),
    (1, 0.3),
    (0, 0.1),
    (None, 0.1),
)


@dataclass(frozen=True)
class CourseSample:
    """One published course: its hierarchy JSON, batches and relation-cache keys."""

    course_id: str
    name: str
    hierarchy: dict[str, Any]
    batch_ids: tuple[str, ...]
    leaf_ids: tuple[str, ...]  # distinct composed leaves, as the root's `leafNodes`
    unit_ids: tuple[str, ...]  # every collection below the root, depth first
    optional_ids: tuple[str, ...]  # ids flagged relationalMetadata.optional (leaves and units)
    relation_keys: dict[str, set[str]]

    @property
    def templated_batch_ids(self) -> tuple[str, ...]:
        """The batches that issue a certificate (every other one, starting with the first)."""
        return self.batch_ids[::2]


class EnrolmentRow(NamedTuple):
    """A ``user_enrolments`` row; ``completedon`` is set only for status 2.

    A named tuple (fields in column order) so a million rows stay cheap to build.
    """

    userid: str
    courseid: str
    batchid: str
    active: bool
    status: int
    progress: int
    contentstatus: dict[str, int] | None
    enrolled_date: datetime
    completedon: datetime | None
    datetime: datetime
    addedby: str | None = None
    # the certificate a completed learner holds (Sunbird's issued_certificates entries)
    issued_certificates: list[dict[str, str]] | None = None


class CourseBatchRow(NamedTuple):
    """A ``course_batch`` row: a batch of a course and its certificate templates, if any."""

    courseid: str
    batchid: str
    name: str
    status: int
    enrollmenttype: str
    startdate: str
    cert_templates: dict[str, dict[str, str]] | None


class ConsumptionRow(NamedTuple):
    """A ``user_content_consumption`` row; ``status`` may be null (None)."""

    userid: str
    courseid: str
    batchid: str
    contentid: str
    status: int | None
    viewcount: int | None
    completedcount: int | None
    progress: int | None
    last_access_time: datetime
    last_updated_time: datetime
    last_completed_time: datetime | None
    datetime: datetime


@dataclass(frozen=True)
class UserActivity:
    """All generated rows of one user."""

    user_id: str
    enrolments: tuple[EnrolmentRow, ...]
    consumption: tuple[ConsumptionRow, ...]


@dataclass(frozen=True)
class SampleData:
    """A generated data set; user rows are produced on demand by the iterator methods.

    Example::

        sample = generate_sample(seed=1, courses=3, users=100)
        sum(1 for _ in sample.consumption())  # same count on every call
    """

    seed: int
    users: int
    courses: tuple[CourseSample, ...]
    courses_per_user: tuple[int, int]
    orphan_rate: float
    stale_rate: float
    base_time: datetime

    def relation_cache(self) -> dict[str, set[str]]:
        """Every relation-cache key of every course (keys are prefixed by the course id)."""
        keys: dict[str, set[str]] = {}
        for course in self.courses:
            keys.update(course.relation_keys)
        return keys

    def user_id(self, index: int) -> str:
        """The id of user ``index`` (0-based)."""
        return _user_id(_user_rng(self.seed, index))

    def user_ids(self) -> Iterator[str]:
        """All user ids, in user order."""
        return (self.user_id(i) for i in range(self.users))

    def user_activity(self, index: int) -> UserActivity:
        """The enrolments and consumption rows of user ``index``."""
        return _generate_user(self, index)

    def activities(self) -> Iterator[UserActivity]:
        """Every user's rows, one user at a time."""
        return (_generate_user(self, i) for i in range(self.users))

    def enrolments(self) -> Iterator[EnrolmentRow]:
        """Every ``user_enrolments`` row, lazily."""
        return (row for activity in self.activities() for row in activity.enrolments)

    def consumption(self) -> Iterator[ConsumptionRow]:
        """Every ``user_content_consumption`` row, lazily."""
        return (row for activity in self.activities() for row in activity.consumption)

    def course_batches(self) -> Iterator[CourseBatchRow]:
        """Every ``course_batch`` row: every other batch of a course has a certificate
        template, the rest none."""
        for course in self.courses:
            for number, batch_id in enumerate(course.batch_ids, start=1):
                templated = batch_id in course.templated_batch_ids
                yield CourseBatchRow(
                    courseid=course.course_id,
                    batchid=batch_id,
                    name=f"{course.name} batch {number}",
                    status=1,
                    enrollmenttype="open",
                    startdate=self.base_time.date().isoformat(),
                    cert_templates=_cert_template(course, batch_id) if templated else None,
                )


def generate_sample(
    seed: int = 42,
    courses: int = 5,
    users: int = 50,
    batches_per_course: int = 2,
    *,
    min_units: int = 2,
    max_units: int = 5,
    max_leaves_per_unit: int = 4,
    courses_per_user: tuple[int, int] = (1, 3),
    orphan_rate: float = 0.05,
    stale_rate: float = 0.1,
    base_time: datetime = DEFAULT_BASE_TIME,
) -> SampleData:
    """Build a deterministic sample: ``courses`` hierarchies now, ``users`` users' rows lazily.

    Example::

        sample = generate_sample(seed=42, courses=5, users=50, batches_per_course=2)
        len(sample.courses), sample.users  # (5, 50)
    """
    if courses < 1:
        raise ValueError(f"courses must be at least 1, got {courses}")
    if users < 0:
        raise ValueError(f"users must not be negative, got {users}")
    if batches_per_course < 1:
        raise ValueError(f"batches_per_course must be at least 1, got {batches_per_course}")
    if not 1 <= min_units <= max_units:
        raise ValueError(f"need 1 <= min_units <= max_units, got {min_units}, {max_units}")
    if max_leaves_per_unit < 2:
        raise ValueError(f"max_leaves_per_unit must be at least 2, got {max_leaves_per_unit}")
    low, high = courses_per_user
    if not 1 <= low <= high:
        raise ValueError(f"need 1 <= courses_per_user[0] <= [1], got {courses_per_user}")

    rng = random.Random(f"{seed}/courses")
    ids = _IdMaker(rng)
    built = tuple(
        _generate_course(
            rng,
            ids,
            index=i,
            batches=batches_per_course,
            min_units=min_units,
            max_units=max_units,
            max_leaves=max_leaves_per_unit,
        )
        for i in range(courses)
    )
    return SampleData(
        seed=seed,
        users=users,
        courses=built,
        courses_per_user=(low, high),
        orphan_rate=orphan_rate,
        stale_rate=stale_rate,
        base_time=base_time,
    )


# --- courses --------------------------------------------------------------------------------


class _IdMaker:
    """Unique Sunbird-looking ids: ``do_21…`` (22 digits) and 19-digit ``01…`` batch ids."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._used: set[str] = set()

    def _unique(self, make: Callable[[], str]) -> str:
        while (value := make()) in self._used:
            pass
        self._used.add(value)
        return value

    def do_id(self) -> str:
        return self._unique(lambda: f"do_21{self._rng.randrange(10**20):020d}")

    def batch_id(self) -> str:
        return self._unique(lambda: f"01{self._rng.randrange(10**17):017d}")


class _CourseBuilder:
    def __init__(self, rng: random.Random, ids: _IdMaker, max_leaves: int) -> None:
        self.rng, self.ids, self.max_leaves = rng, ids, max_leaves
        self.leaves: list[Node] = []
        self.units = 0

    def leaf(self, *, optional: bool = False) -> Node:
        n = len(self.leaves) + 1
        node = content(
            self.ids.do_id(),
            self.rng.choice(LEAF_MIME_TYPES),
            optional=optional,
            name=f"Resource {n}",
            contentType="Resource",
            visibility="Default",
        )
        self.leaves.append(node)
        return node

    def leaves_for_unit(self, count: int) -> list[Node]:
        # An extra optional leaf now and then, on top of the one each course is given.
        return [self.leaf(optional=self.rng.random() < 0.08) for _ in range(count)]

    def unit(self, children: list[Node], *, optional: bool = False) -> Node:
        self.units += 1
        return collection(
            self.ids.do_id(),
            children,
            optional=optional,
            name=f"Unit {self.units}",
            contentType="CourseUnit",
            visibility="Parent",
        )


def _with_optional(node: Node, optional: bool) -> Node:
    return replace(node, optional=optional)


def _generate_course(
    rng: random.Random,
    ids: _IdMaker,
    *,
    index: int,
    batches: int,
    min_units: int,
    max_units: int,
    max_leaves: int,
) -> CourseSample:
    course_id = ids.do_id()
    b = _CourseBuilder(rng, ids, max_leaves)
    n_units = rng.randint(max(min_units, 2), max(max_units, 2))
    children = _course_children(rng, b, n_units=n_units, first=index == 0, max_leaves=max_leaves)
    name = f"Sample Course {index + 1}"
    return _course_sample(course_id, name, children, [ids.batch_id() for _ in range(batches)])


def _course_children(
    rng: random.Random, b: _CourseBuilder, *, n_units: int, first: bool, max_leaves: int
) -> list[Node]:
    """The top-level children of a course: units (nested, sharing a leaf, one optional leaf),
    sometimes an optional unit (always in the first course), an empty unit, loose leaves."""
    # Top-level units, each a list of children so nested units and shared leaves can be added.
    units = [b.leaves_for_unit(rng.randint(1, max_leaves)) for _ in range(n_units)]

    # Nested units: one guaranteed, more at random, occasionally two levels deep.
    nested_hosts = {rng.randrange(n_units)} | {i for i in range(n_units) if rng.random() < 0.3}
    for host in sorted(nested_hosts):
        inner = b.leaves_for_unit(rng.randint(1, max(1, max_leaves - 1)))
        if rng.random() < 0.2:
            inner.append(b.unit(b.leaves_for_unit(rng.randint(1, 2))))
        units[host].insert(rng.randint(0, len(units[host])), b.unit(inner))

    # A leaf of one unit re-used in another (the same content in two places).
    src, dst = rng.sample(range(n_units), 2)
    shared = rng.choice([c for c in units[src] if not c.is_collection])
    units[dst].append(_with_optional(shared, False))

    # The guaranteed optional leaf: flag one (unshared) leaf entry of some unit.
    target = rng.randrange(n_units)
    plain = [
        i
        for i, c in enumerate(units[target])
        if not c.is_collection and c.identifier != shared.identifier
    ]
    if plain:
        pos = rng.choice(plain)
        units[target][pos] = _with_optional(units[target][pos], True)
    else:
        units[target].append(b.leaf(optional=True))

    children: list[Node] = [b.unit(kids) for kids in units]
    if first or rng.random() < 0.5:
        optional_unit = b.unit(b.leaves_for_unit(rng.randint(1, 3)), optional=True)
        children.insert(rng.randint(0, len(children)), optional_unit)
    if rng.random() < 0.15:
        children.append(b.unit([]))  # a unit with no contents yet
    children.extend(b.leaf() for _ in range(rng.choice((0, 0, 1, 2))))
    return children


def _course_sample(
    course_id: str, name: str, children: list[Node], batch_ids: list[str]
) -> CourseSample:
    """The course's hierarchy (with its leafnodes) and what the generator keeps of it."""
    draft = collection(course_id, children).to_dict()
    leaf_ids = tuple(dict.fromkeys(compose_leaf_nodes(draft)))
    root = Node(
        course_id,
        draft["mimeType"],
        tuple(children),
        leaf_nodes=leaf_ids,
        extra={
            "name": name,
            "contentType": "Course",
            "visibility": "Default",
            "status": "Live",
            "leafNodesCount": len(leaf_ids),
        },
    )
    hierarchy = root.to_dict()
    walked = list(root.walk())[1:]
    unit_ids = tuple(dict.fromkeys(n.identifier for n in walked if n.is_collection))
    optional_ids = tuple(dict.fromkeys(n.identifier for n in walked if n.optional))
    return CourseSample(
        course_id=course_id,
        name=name,
        hierarchy=hierarchy,
        batch_ids=tuple(batch_ids),
        leaf_ids=leaf_ids,
        unit_ids=unit_ids,
        optional_ids=optional_ids,
        relation_keys=relation_cache_keys(hierarchy),
    )


# --- users ----------------------------------------------------------------------------------


def _cert_template(course: CourseSample, batch_id: str) -> dict[str, dict[str, str]]:
    template_id = f"template_{zlib.crc32(batch_id.encode()):08x}"
    criteria = '{"enrollment": {"status": 2}}'
    return {
        template_id: {
            "identifier": template_id,
            "name": f"{course.name} completion certificate",
            "criteria": criteria,
        }
    }


def _holds_certificate(course: CourseSample, batch_id: str, user_id: str, status: int) -> bool:
    """Half of the completed learners of templated batches hold their certificate (a hash of
    the key, not the user's random stream: the other rows stay what they were)."""
    if status != 2 or batch_id not in course.templated_batch_ids:
        return False
    return zlib.crc32(f"{user_id}|{course.course_id}".encode()) % 2 == 0


def _issued_certificate(course: CourseSample, batch_id: str, user_id: str, on: datetime):
    token = f"{zlib.crc32(f'{user_id}|{batch_id}'.encode()):08X}"
    return [
        {
            "identifier": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{user_id}/{batch_id}")),
            "name": f"{course.name} completion certificate",
            "token": token,
            "lastIssuedOn": on.isoformat(),
        }
    ]


def _user_rng(seed: int, index: int) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`, so streams do not depend on PYTHONHASHSEED.
    return random.Random(f"{seed}/user/{index}")


def _user_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _below(rng: random.Random, n: int) -> int:
    # `int(random() * n)` is several times faster than `randrange(n)`; its bias is irrelevant here.
    return int(rng.random() * n)


def _weighted(rng: random.Random, weights: tuple[tuple[Any, float], ...]) -> Any:
    x = rng.random()  # the weights sum to 1
    for value, weight in weights:
        x -= weight
        if x < 0:
            return value
    return weights[-1][0]


def _at(base: datetime, rng: random.Random, max_days: int) -> datetime:
    return base + timedelta(seconds=_below(rng, max_days * 86_400))


def _consumption_row(
    rng: random.Random,
    user_id: str,
    course_id: str,
    batch_id: str,
    content_id: str,
    status: int | None,
    after: datetime,
) -> ConsumptionRow:
    r = rng.random
    accessed = after + timedelta(seconds=1 + int(r() * 30 * 86_400))
    done = status == 2
    null_counts = status is None and r() < 0.5
    return ConsumptionRow(
        userid=user_id,
        courseid=course_id,
        batchid=batch_id,
        contentid=content_id,
        status=status,
        viewcount=None if null_counts else 1 + int(r() * 5),
        completedcount=None if null_counts else (1 + int(r() * 2) if done else 0),
        progress=None if status is None else (100 if done else int(r() * 100)),
        last_access_time=accessed,
        last_updated_time=accessed,
        last_completed_time=accessed if done else None,
        datetime=accessed,
    )


def _generate_user(sample: SampleData, index: int) -> UserActivity:
    if not 0 <= index < sample.users:
        raise IndexError(f"user index {index} out of range 0..{sample.users - 1}")
    rng = _user_rng(sample.seed, index)
    user_id = _user_id(rng)
    n_courses = len(sample.courses)
    low, high = sample.courses_per_user
    wanted = low + _below(rng, high - low + 1)
    # user 0 leaves one course free for its consumption without an enrolment
    limit = max(1, n_courses - 1) if index == 0 else n_courses
    picked = rng.sample(range(n_courses), min(wanted, limit))

    enrolments: list[EnrolmentRow] = []
    consumption: list[ConsumptionRow] = []
    for course_index in picked:
        course = sample.courses[course_index]
        batch_id = course.batch_ids[_below(rng, len(course.batch_ids))]
        status: int = _weighted(rng, ENROLMENT_STATUS_WEIGHTS)
        enrolled = _at(sample.base_time, rng, 180)
        statuses = _leaf_statuses(rng, course, status)
        if rng.random() < sample.stale_rate or (index == 0 and not enrolments):
            statuses[_stale_content_id(rng)] = 1 + _below(rng, 2)
        rows = [
            _consumption_row(rng, user_id, course.course_id, batch_id, c, s, enrolled)
            for c, s in statuses.items()
        ]
        consumption.extend(rows)
        enrolments.append(_enrolment_row(rng, user_id, course, batch_id, status, enrolled, rows))

    # Consumption in a course the user is not enrolled in (no user_enrolments row).
    if len(picked) < n_courses and (index == 0 or rng.random() < sample.orphan_rate):
        consumption.extend(_orphan_consumption(rng, sample, user_id, picked))
    return UserActivity(user_id, tuple(enrolments), tuple(consumption))


def _leaf_statuses(rng: random.Random, course: CourseSample, status: int) -> dict[str, int | None]:
    """The consumption status of each content the learner touched, given the enrolment's."""
    leaves = course.leaf_ids
    if status == 2:
        skip = set(course.optional_ids) if rng.random() < 0.3 else set()
        return {c: 2 for c in leaves if c not in skip}
    if status == 1 and rng.random() < STUCK_RATE:
        # progress did not update: every leaf is done but the enrolment still says 1
        return {c: 2 for c in leaves}
    if status == 1:
        touched = rng.sample(leaves, 1 + _below(rng, len(leaves)))
        return {c: _weighted(rng, CONSUMPTION_STATUS_WEIGHTS) for c in touched}
    if rng.random() < 0.3:  # enrolment says "not started" but consumption exists
        touched = rng.sample(leaves, min(2, len(leaves)))
        return {c: 1 + _below(rng, 2) for c in touched}
    return {}


def _enrolment_row(
    rng: random.Random,
    user_id: str,
    course: CourseSample,
    batch_id: str,
    status: int,
    enrolled: datetime,
    rows: list[ConsumptionRow],
) -> EnrolmentRow:
    """The enrolment's row: status 2 rows are consistent; others often lag behind their
    consumption (progress, contentstatus)."""
    last = max((r.last_updated_time for r in rows), default=enrolled)
    completed = sum(1 for r in rows if r.status == 2)
    contentstatus = None
    if rows and rng.random() < 0.7:
        contentstatus = {r.contentid: r.status for r in rows if r.status is not None}
    return EnrolmentRow(
        userid=user_id,
        courseid=course.course_id,
        batchid=batch_id,
        active=True,
        status=status,
        progress=completed if status == 2 else _below(rng, completed + 1),
        contentstatus=contentstatus,
        enrolled_date=enrolled,
        completedon=last if status == 2 else None,
        datetime=last,
        issued_certificates=(
            _issued_certificate(course, batch_id, user_id, last)
            if _holds_certificate(course, batch_id, user_id, status)
            else None
        ),
    )


def _orphan_consumption(
    rng: random.Random, sample: SampleData, user_id: str, picked: list[int]
) -> list[ConsumptionRow]:
    """A few consumption rows in a course the learner is not enrolled in."""
    n_courses = len(sample.courses)
    course_index = _below(rng, n_courses)
    while course_index in picked:
        course_index = _below(rng, n_courses)
    course = sample.courses[course_index]
    batch_id = course.batch_ids[_below(rng, len(course.batch_ids))]
    started = _at(sample.base_time, rng, 180)
    return [
        _consumption_row(rng, user_id, course.course_id, batch_id, c, 1 + _below(rng, 2), started)
        for c in rng.sample(course.leaf_ids, min(len(course.leaf_ids), 1 + _below(rng, 3)))
    ]


def _stale_content_id(rng: random.Random) -> str:
    # A content id that no course contains: removed in a later publish, or never in the course.
    return f"do_31{rng.getrandbits(64) % 10**20:020d}"
