"""Course structure from the relation cache: the key format, and one row per course.

The relation cache (docs/behaviour.md §3) is a set of Redis SETs keyed ``<course>:<node>:<kind>``.
The core sees it as one row per course (``schemas.COURSE_STRUCTURE_SCHEMA``): the course's
leafnodes, optionalnodes and required leaves, and its units, each with its leaves, its required
leaves and the contents whose ancestors name it. One broadcast row per course replaces three joins,
and every aggregate becomes a column expression over it. What does not depend on a learner (the
set differences, the inverted ancestors relation) is computed here once per course, not once
per enrolment.

Pure Python (no Spark, no Redis): readers fill a members mapping, this module shapes it.

Example::

    members = {"C:C:leafnodes": frozenset({"R1"}), "C:R1:ancestors": frozenset({"U1", "C"})}
    course_structure("C", members).to_row()
    # ('C', ['R1'], [], ['R1'], [('U1', [], [], [], ['R1'])], None, None)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

LEAFNODES, OPTIONALNODES, ANCESTORS = "leafnodes", "optionalnodes", "ancestors"
KINDS = (LEAFNODES, OPTIONALNODES, ANCESTORS)


def relation_key(course_id: str, node_id: str, kind: str) -> str:
    """The relation-cache key of a node: ``<course>:<node>:<kind>``."""
    return f"{course_id}:{node_id}:{kind}"


def parse_relation_key(key: str) -> tuple[str, str, str] | None:
    """``(course, node, kind)`` of a relation-cache key, or None for any other key.

    Sunbird ids hold no colon, so the course is the text before the first one and the kind the
    text after the last one.
    """
    course, sep, rest = key.partition(":")
    node, sep2, kind = rest.rpartition(":")
    if not (sep and sep2 and course and node) or kind not in KINDS:
        return None
    return course, node, kind


@dataclass(frozen=True)
class CourseStructure:
    """What the relation cache says about one course (empty sets: the key is absent)."""

    course_id: str
    leafnodes: frozenset[str] = frozenset()
    optionalnodes: frozenset[str] = frozenset()
    ancestors: Mapping[str, frozenset[str]] = field(default_factory=dict)
    units: Mapping[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)
    problem: str | None = None  # a relation-cache fault: the course's requests fail with it
    collection_status: str | None = None  # from the search service, when leafnodes are missing

    def under(self) -> dict[str, frozenset[str]]:
        """Unit -> the contents whose ancestors name it (the ancestors relation inverted)."""
        inverted: dict[str, set[str]] = {u: set() for u in self.units}
        for content, above in self.ancestors.items():
            for unit in above:
                if unit in inverted:
                    inverted[unit].add(content)
        return {u: frozenset(c) for u, c in inverted.items()}

    def to_row(self) -> tuple:
        """The row of ``COURSE_STRUCTURE_SCHEMA`` (sorted, so equal structures give equal rows)."""
        under = self.under()
        units = [
            (u, sorted(leaves), sorted(optional), sorted(leaves - optional), sorted(under[u]))
            for u, (leaves, optional) in sorted(self.units.items())
        ]
        return (
            self.course_id,
            sorted(self.leafnodes),
            sorted(self.optionalnodes),
            sorted(self.leafnodes - self.optionalnodes),
            units,
            self.collection_status,
            self.problem,
        )


def course_structure(
    course_id: str,
    members: Mapping[str, frozenset[str]],
    *,
    faults: Mapping[str, str] | None = None,
    collection_status: str | None = None,
) -> CourseStructure:
    """Assemble a course from the members of its keys (``members`` may hold other courses' keys).

    Every unit named in an ancestors set gets an entry, with empty leaves when its own
    leafnodes key is absent (it then counts 0, as in the original). ``faults`` maps keys that
    could not be read as sets to what they held; any fault of this course's keys marks the
    whole course, since its structure cannot be trusted.
    """

    def get(node: str, kind: str) -> frozenset[str]:
        return members.get(relation_key(course_id, node, kind), frozenset())

    prefix = f"{course_id}:"
    ancestors: dict[str, frozenset[str]] = {}
    for key, value in members.items():
        parsed = parse_relation_key(key) if key.startswith(prefix) else None
        if parsed and parsed[0] == course_id and parsed[2] == ANCESTORS and value:
            ancestors[parsed[1]] = value
    unit_ids = {u for above in ancestors.values() for u in above if u != course_id}
    problems = sorted(
        f"relation cache key {key} holds {held}, not a set"
        for key, held in (faults or {}).items()
        if key.startswith(prefix)
    )
    return CourseStructure(
        course_id=course_id,
        leafnodes=get(course_id, LEAFNODES),
        optionalnodes=get(course_id, OPTIONALNODES),
        ancestors=ancestors,
        units={u: (get(u, LEAFNODES), get(u, OPTIONALNODES)) for u in unit_ids},
        problem="; ".join(problems) or None,
        collection_status=collection_status,
    )


def keys_for_contents(
    course_id: str, content_ids: Iterable[str], kinds: Iterable[str]
) -> list[str]:
    """The course's own keys of ``kinds`` plus the ancestors key of each content."""
    own = [relation_key(course_id, course_id, k) for k in kinds if k != ANCESTORS]
    return own + [relation_key(course_id, c, ANCESTORS) for c in sorted(set(content_ids))]


def keys_for_units(course_id: str, unit_ids: Iterable[str], kinds: Iterable[str]) -> list[str]:
    """The leafnodes (and optionalnodes) keys of the units."""
    wanted = [k for k in kinds if k != ANCESTORS]
    return [relation_key(course_id, u, k) for u in sorted(set(unit_ids)) for k in wanted]
