"""The relation-cache key format and one course's structure row (pure Python, no Spark)."""

from __future__ import annotations

from enrolment_reconciliation.core.structure import (
    ANCESTORS,
    LEAFNODES,
    OPTIONALNODES,
    course_structure,
    keys_for_contents,
    keys_for_units,
    parse_relation_key,
    relation_key,
)

MEMBERS = {
    "C:C:leafnodes": frozenset({"R1", "R2", "R3"}),
    "C:C:optionalnodes": frozenset({"R3"}),
    "C:U1:leafnodes": frozenset({"R1", "R3"}),
    "C:U1:optionalnodes": frozenset({"R3"}),
    "C:R1:ancestors": frozenset({"U1", "C"}),
    "C:R3:ancestors": frozenset({"U1", "U2", "C"}),
    "C:R2:ancestors": frozenset(),  # an empty set names no unit
    "D:R1:ancestors": frozenset({"DU", "D"}),  # another course's key with the same content
}


def test_keys_are_course_node_kind_and_anything_else_is_not_a_key():
    assert relation_key("C", "R1", ANCESTORS) == "C:R1:ancestors"
    assert parse_relation_key("C:R1:ancestors") == ("C", "R1", "ancestors")
    assert parse_relation_key("C:C:leafnodes") == ("C", "C", "leafnodes")
    for other in ("C:R1:children", "C:leafnodes", ":R1:ancestors", "C::ancestors", "plain"):
        assert parse_relation_key(other) is None, other


def test_a_course_row_has_its_required_leaves_and_units_with_the_contents_under_them():
    row = course_structure("C", MEMBERS).to_row()
    assert row == (
        "C",
        ["R1", "R2", "R3"],
        ["R3"],
        ["R1", "R2"],  # required: leafnodes minus optionalnodes
        [
            ("U1", ["R1", "R3"], ["R3"], ["R1"], ["R1", "R3"]),
            ("U2", [], [], [], ["R3"]),  # named by an ancestors set, no leafnodes key: counts 0
        ],
        None,
        None,
    )


def test_a_fault_in_any_key_of_the_course_marks_the_whole_course_and_only_it():
    faults = {"C:U1:leafnodes": "a string", "D:D:leafnodes": "a list"}
    structure = course_structure("C", MEMBERS, faults=faults, collection_status="Live")
    assert structure.problem == "relation cache key C:U1:leafnodes holds a string, not a set"
    assert structure.collection_status == "Live"
    assert course_structure("E", MEMBERS, faults=faults).problem is None
    assert course_structure("E", MEMBERS).to_row() == ("E", [], [], [], [], None, None)


def test_the_keys_to_read_for_a_course_its_contents_and_its_units():
    kinds = (LEAFNODES, OPTIONALNODES, ANCESTORS)
    assert keys_for_contents("C", ["R2", "R1", "R2"], kinds) == [
        "C:C:leafnodes",
        "C:C:optionalnodes",
        "C:R1:ancestors",
        "C:R2:ancestors",
    ]
    assert keys_for_contents("C", ["R1"], (LEAFNODES, ANCESTORS)) == [
        "C:C:leafnodes",
        "C:R1:ancestors",
    ]
    assert keys_for_units("C", ["U2", "U1"], kinds) == [
        "C:U1:leafnodes",
        "C:U1:optionalnodes",
        "C:U2:leafnodes",
        "C:U2:optionalnodes",
    ]
