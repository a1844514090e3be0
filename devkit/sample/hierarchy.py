"""Course hierarchies and the relation-cache keys that Sunbird's relation-cache-updater derives.

Pure Python: no I/O, no Spark. A hierarchy is the published JSON as a ``dict`` (``identifier``,
``mimeType``, ``children``, ``relationalMetadata.optional`` on child entries, ``leafNodes`` on the
root); :class:`Node` builds one. :func:`relation_cache_keys` applies the rules of docs/behaviour.md
§3.3.

Example::

    course = collection("C", [collection("U1", [content("R1"), content("R2", optional=True)])])
    relation_cache_keys(course.to_dict())["C:C:optionalnodes"]  # {'R2'}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from enrolment_reconciliation.core.structure import (
    ANCESTORS,
    LEAFNODES,
    OPTIONALNODES,
    relation_key,
)

COLLECTION_MIME_TYPE = "application/vnd.ekstep.content-collection"

Hierarchy = Mapping[str, Any]


@dataclass(frozen=True)
class Node:
    """One node of a course hierarchy; ``optional`` is the parent's ``relationalMetadata``.

    Example::

        Node("do_1", "application/pdf", optional=True).to_dict()
        # {'identifier': 'do_1', 'mimeType': 'application/pdf',
        #  'relationalMetadata': {'optional': True}}
    """

    identifier: str
    mime_type: str
    children: tuple[Node, ...] = ()
    optional: bool = False
    leaf_nodes: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_collection(self) -> bool:
        return self.mime_type.lower() == COLLECTION_MIME_TYPE

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, depth first (re-used nodes repeat)."""
        yield self
        for child in self.children:
            yield from child.walk()

    def to_dict(self) -> dict[str, Any]:
        """The node as published hierarchy JSON."""
        out: dict[str, Any] = {"identifier": self.identifier, "mimeType": self.mime_type}
        out.update(self.extra)
        if self.optional:
            out["relationalMetadata"] = {"optional": True}
        if self.leaf_nodes is not None:
            out["leafNodes"] = list(self.leaf_nodes)
        if self.children:
            out["children"] = [c.to_dict() for c in self.children]
        return out


def collection(
    identifier: str, children: Sequence[Node] = (), *, optional: bool = False, **extra: Any
) -> Node:
    """A collection (course or unit) node.

    Example: ``collection("do_unit", [content("do_r1")], name="Unit 1")``
    """
    return Node(identifier, COLLECTION_MIME_TYPE, tuple(children), optional, extra=extra)


def content(
    identifier: str, mime_type: str = "application/pdf", *, optional: bool = False, **extra: Any
) -> Node:
    """A leaf (non-collection) node. Example: ``content("do_r1", "video/mp4", optional=True)``."""
    return Node(identifier, mime_type, (), optional, extra=extra)


def is_collection(node: Hierarchy) -> bool:
    """True iff ``mimeType`` is the content-collection type, ignoring case.

    Example: ``is_collection({"mimeType": "Application/vnd.ekstep.content-collection"})`` is True.
    """
    mime_type = node.get("mimeType")
    return isinstance(mime_type, str) and mime_type.lower() == COLLECTION_MIME_TYPE


def is_optional(node: Hierarchy) -> bool:
    """True iff the entry's ``relationalMetadata.optional`` is true or "true" (any case).

    Example: ``is_optional({"relationalMetadata": {"optional": "TRUE"}})`` is True.
    """
    meta = node.get("relationalMetadata")
    if not isinstance(meta, Mapping):
        return False
    return str(meta.get("optional", "")).lower() == "true"


def _children(node: Hierarchy) -> list[Hierarchy]:
    return list(node.get("children") or [])


def _identifier(node: Hierarchy) -> str:
    value = node.get("identifier")
    return value.strip() if isinstance(value, str) else ""


def compose_leaf_nodes(node: Hierarchy) -> list[str]:
    """Leaf ids under ``node``: collection children first (recursively), then direct leaves.

    Any ``leafNodes`` property is ignored. Example: for the spec's U1 -> ``['R2', 'R3', 'R1']``.
    """
    children = _children(node)
    composed = [leaf for c in children if is_collection(c) for leaf in compose_leaf_nodes(c)]
    composed.extend(_identifier(c) for c in children if not is_collection(c) and _identifier(c))
    return composed


def _own_leaf_nodes(node: Hierarchy) -> list[str]:
    # An entry node carrying a `leafNodes` property (publish sets it on the root) is taken
    # verbatim, even when empty; nodes below are always composed.
    if "leafNodes" in node:
        return [str(leaf) for leaf in node.get("leafNodes") or []]
    return compose_leaf_nodes(node)


def compose_optional_nodes(node: Hierarchy) -> list[str]:
    """Ids of optional children, plus those found inside non-optional children.

    The walk stops at an optional child, so an optional unit contributes its own id only.
    Example: for the spec's root C -> ``['R3', 'U2']``.
    """
    children = _children(node)
    found = [o for c in children if not is_optional(c) for o in compose_optional_nodes(c)]
    found.extend(_identifier(c) for c in children if is_optional(c) and _identifier(c))
    return found


def _collections(node: Hierarchy) -> Iterator[Hierarchy]:
    if is_collection(node):
        yield node
        for child in _children(node):
            yield from _collections(child)


def _ancestors(node: Hierarchy, path: list[str], out: dict[str, set[str]]) -> None:
    if not is_collection(node):
        leaf = _identifier(node)
        if leaf and path:
            out.setdefault(leaf, set()).update(path)
        return
    node_id = _identifier(node)
    below = [node_id, *path] if node_id else path  # nearest first, root last
    for child in _children(node):
        _ancestors(child, below, out)


def relation_cache_keys(hierarchy: Hierarchy) -> dict[str, set[str]]:
    """Every relation-cache key of a published course and its members (docs/behaviour.md §3.3).

    Keys are ``<root>:<node>:leafnodes`` (each collection with leaves; the root's own
    ``leafNodes`` property wins if present), ``<root>:<node>:optionalnodes`` (each collection
    with optional nodes below it) and ``<root>:<leaf>:ancestors`` (each leaf; the union of its
    collection paths). Keys with no members are left out. A root that is not a collection yields
    nothing; nodes without an identifier get no key. When a unit id occurs twice, its later
    non-empty occurrence wins, as in the original.

    Example::

        tree = collection("C", [collection("U", [content("R")])]).to_dict()
        relation_cache_keys(tree)
        # {'C:C:leafnodes': {'R'}, 'C:U:leafnodes': {'R'}, 'C:R:ancestors': {'U', 'C'}}
    """
    root = _identifier(hierarchy)
    if not root or not is_collection(hierarchy):
        return {}
    keys: dict[str, set[str]] = {}
    for node in _collections(hierarchy):
        leaves = set(_own_leaf_nodes(node))
        if leaves and _identifier(node):
            keys[relation_key(root, _identifier(node), LEAFNODES)] = leaves
    for node in _collections(hierarchy):
        optional = set(compose_optional_nodes(node))
        if optional and _identifier(node):
            keys[relation_key(root, _identifier(node), OPTIONALNODES)] = optional
    ancestors: dict[str, set[str]] = {}
    _ancestors(hierarchy, [], ancestors)
    for leaf, path in ancestors.items():
        keys[relation_key(root, leaf, ANCESTORS)] = path
    return keys
