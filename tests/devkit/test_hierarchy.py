"""relation_cache_keys against the worked example of docs/behaviour.md §3.3 and the rules behind
it."""

from __future__ import annotations

from typing import Any

import pytest

from devkit.sample.hierarchy import (
    COLLECTION_MIME_TYPE,
    collection,
    compose_leaf_nodes,
    compose_optional_nodes,
    content,
    relation_cache_keys,
)

OPTIONAL = {"relationalMetadata": {"optional": True}}


def coll(identifier: str, *children: dict[str, Any]) -> dict[str, Any]:
    return {"identifier": identifier, "mimeType": COLLECTION_MIME_TYPE, "children": list(children)}


def leaf(identifier: str, mime_type: str = "application/pdf") -> dict[str, Any]:
    return {"identifier": identifier, "mimeType": mime_type}


def optional(node: dict[str, Any]) -> dict[str, Any]:
    return {**node, **OPTIONAL}


def worked_example() -> dict[str, Any]:
    """docs/behaviour.md §3.3: C{U1{R1, U1a{R2, R3*}}, U2*{R4, R1}, R5} (* = optional)."""
    return coll(
        "C",
        coll("U1", leaf("R1"), coll("U1a", leaf("R2", "video/mp4"), optional(leaf("R3")))),
        optional(coll("U2", leaf("R4"), leaf("R1"))),
        leaf("R5", "application/vnd.ekstep.ecml-archive"),
    )


WORKED_EXAMPLE_KEYS = {
    "C:C:leafnodes": {"R1", "R2", "R3", "R4", "R5"},
    "C:U1:leafnodes": {"R1", "R2", "R3"},
    "C:U1a:leafnodes": {"R2", "R3"},
    "C:U2:leafnodes": {"R1", "R4"},
    "C:C:optionalnodes": {"R3", "U2"},
    "C:U1:optionalnodes": {"R3"},
    "C:U1a:optionalnodes": {"R3"},
    "C:R1:ancestors": {"U1", "U2", "C"},
    "C:R2:ancestors": {"U1a", "U1", "C"},
    "C:R3:ancestors": {"U1a", "U1", "C"},
    "C:R4:ancestors": {"U2", "C"},
    "C:R5:ancestors": {"C"},
}


def test_worked_example_keys_are_exactly_the_spec_table() -> None:
    assert relation_cache_keys(worked_example()) == WORKED_EXAMPLE_KEYS


def test_worked_example_with_root_leaf_nodes_property_gives_the_same_keys() -> None:
    tree = {**worked_example(), "leafNodes": ["R1", "R2", "R3", "R4", "R5"]}
    assert relation_cache_keys(tree) == WORKED_EXAMPLE_KEYS


def test_root_leaf_nodes_property_is_used_verbatim_instead_of_composing() -> None:
    tree = {**worked_example(), "leafNodes": ["R1", "R9"]}
    keys = relation_cache_keys(tree)
    assert keys["C:C:leafnodes"] == {"R1", "R9"}
    assert keys == {**WORKED_EXAMPLE_KEYS, "C:C:leafnodes": {"R1", "R9"}}


def test_leaf_nodes_property_below_the_entry_node_is_ignored_when_composing() -> None:
    tree = coll("C", {**coll("U", leaf("R1")), "leafNodes": ["X"]})
    assert compose_leaf_nodes(tree) == ["R1"]
    assert relation_cache_keys(tree)["C:C:leafnodes"] == {"R1"}


def test_worked_example_built_with_node_helpers_matches_the_json() -> None:
    tree = collection(
        "C",
        [
            collection(
                "U1",
                [content("R1"), collection("U1a", [content("R2"), content("R3", optional=True)])],
            ),
            collection("U2", [content("R4"), content("R1")], optional=True),
            content("R5"),
        ],
    )
    assert relation_cache_keys(tree.to_dict()) == WORKED_EXAMPLE_KEYS
    assert compose_optional_nodes(tree.to_dict()) == ["R3", "U2"]


def test_optional_leaf_propagates_to_every_ancestor() -> None:
    tree = coll("C", coll("U", coll("V", leaf("R1"), optional(leaf("R2")))))
    keys = relation_cache_keys(tree)
    assert {k: v for k, v in keys.items() if k.endswith(":optionalnodes")} == {
        "C:C:optionalnodes": {"R2"},
        "C:U:optionalnodes": {"R2"},
        "C:V:optionalnodes": {"R2"},
    }


def test_optional_unit_contributes_its_own_id_not_its_leaves() -> None:
    tree = coll("C", leaf("R0"), optional(coll("U", leaf("R1"), optional(leaf("R2")))))
    keys = relation_cache_keys(tree)
    assert keys["C:C:optionalnodes"] == {"U"}
    # the optional unit still gets its own keys
    assert keys["C:U:optionalnodes"] == {"R2"}
    assert keys["C:U:leafnodes"] == {"R1", "R2"}
    assert keys["C:C:leafnodes"] == {"R0", "R1", "R2"}


def test_unit_without_leaves_gets_no_leafnodes_key() -> None:
    tree = coll("C", coll("Empty"), coll("Outer", coll("Inner")), coll("U", leaf("R1")))
    keys = relation_cache_keys(tree)
    assert keys == {
        "C:C:leafnodes": {"R1"},
        "C:U:leafnodes": {"R1"},
        "C:R1:ancestors": {"U", "C"},
    }


def test_collections_get_no_ancestors_key_and_leaves_no_leafnodes_key() -> None:
    keys = relation_cache_keys(worked_example())
    assert not any(k.endswith(":ancestors") and k.split(":")[1].startswith("U") for k in keys)
    assert not any(k.endswith(":leafnodes") and k.split(":")[1].startswith("R") for k in keys)


@pytest.mark.parametrize("flag", [True, "true", "TRUE"])
def test_optional_flag_accepts_boolean_and_string_true(flag: Any) -> None:
    tree = coll("C", leaf("R1"), {**leaf("R2"), "relationalMetadata": {"optional": flag}})
    assert relation_cache_keys(tree)["C:C:optionalnodes"] == {"R2"}


@pytest.mark.parametrize("flag", [False, "false", None])
def test_optional_flag_false_or_missing_is_not_optional(flag: Any) -> None:
    tree = coll("C", leaf("R1"), {**leaf("R2"), "relationalMetadata": {"optional": flag}})
    assert "C:C:optionalnodes" not in relation_cache_keys(tree)


def test_collection_mime_type_is_matched_case_insensitively() -> None:
    tree = {
        "identifier": "C",
        "mimeType": "Application/Vnd.Ekstep.Content-Collection",
        "children": [{**coll("U", leaf("R1")), "mimeType": COLLECTION_MIME_TYPE.upper()}],
    }
    assert relation_cache_keys(tree) == {
        "C:C:leafnodes": {"R1"},
        "C:U:leafnodes": {"R1"},
        "C:R1:ancestors": {"U", "C"},
    }


def test_root_that_is_not_a_collection_has_no_keys() -> None:
    assert relation_cache_keys(leaf("R1")) == {}
