"""Redis relation cache (spec.md §3): read only the keys a batch needs, pipelined, TTL-cached.

Keys are SETs written by relation-cache-updater, all prefixed by the root course id:
``<course>:<course>:leafnodes``, ``<course>:<course>:optionalnodes``,
``<course>:<content>:ancestors``, ``<course>:<unit>:leafnodes``, ``<course>:<unit>:optionalnodes``.
A batch needs two pipelined round trips at most (course + ancestors keys, then unit keys); what
was read is kept per course for ``ttl`` seconds, so steady streams mostly hit the local cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import redis
from pyspark.sql import DataFrame, SparkSession

from enrolment_reconciliation.schemas import (
    ANCESTORS_SCHEMA,
    COURSE_NODES_SCHEMA,
    UNIT_NODES_SCHEMA,
)

LEAFNODES, OPTIONALNODES, ANCESTORS = "leafnodes", "optionalnodes", "ancestors"


def relation_key(course_id: str, node_id: str, kind: str) -> str:
    """The relation-cache key of a node: ``<course>:<node>:<kind>``."""
    return f"{course_id}:{node_id}:{kind}"


@dataclass
class RelationSnapshot:
    """The members of every key a batch asked for (empty set = key absent)."""

    members: dict[str, frozenset[str]] = field(default_factory=dict)
    keys_read: int = 0  # every key resolved: the original's `cache-hit-count`
    keys_empty: int = 0  # keys with no members: `cache-miss-count`
    redis_reads: int = 0  # keys fetched from Redis (not from the local TTL cache)

    def get(self, course_id: str, node_id: str, kind: str) -> frozenset[str]:
        return self.members.get(relation_key(course_id, node_id, kind), frozenset())


@dataclass
class _CourseEntry:
    expires_at: float
    members: dict[str, frozenset[str]] = field(default_factory=dict)


class RelationCacheReader:
    """Fetches relation-cache keys with pipelined SMEMBERS and keeps them per course for a TTL."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl_seconds: float = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._clock = clock
        self._courses: dict[str, _CourseEntry] = {}

    @classmethod
    def from_config(cls, cfg) -> RelationCacheReader:  # cfg: JobConfig
        client = redis.Redis(
            host=cfg.redis_host,
            port=cfg.redis_port,
            db=cfg.relation_cache_db,
            password=cfg.credentials.redis_password,
            socket_timeout=30,
            socket_connect_timeout=10,
            decode_responses=True,
            retry_on_timeout=True,
        )
        return cls(client, ttl_seconds=cfg.relation_cache_ttl)

    def _entry(self, course_id: str, now: float) -> _CourseEntry:
        entry = self._courses.get(course_id)
        if entry is None or entry.expires_at <= now:
            entry = _CourseEntry(expires_at=now + self._ttl)
            self._courses[course_id] = entry
        return entry

    def _resolve(self, wanted: dict[str, list[str]], snapshot: RelationSnapshot) -> None:
        """Fill ``snapshot`` with the wanted keys per course; one pipeline for the misses."""
        now = self._clock()
        to_fetch: list[tuple[str, str]] = []
        for course_id, keys in wanted.items():
            entry = self._entry(course_id, now)
            for key in keys:
                if key in entry.members:
                    snapshot.members[key] = entry.members[key]
                else:
                    to_fetch.append((course_id, key))
        if to_fetch:
            pipe = self._client.pipeline(transaction=False)
            for _, key in to_fetch:
                pipe.smembers(key)
            for (course_id, key), members in zip(to_fetch, pipe.execute(), strict=True):
                frozen = frozenset(members)
                self._courses[course_id].members[key] = frozen
                snapshot.members[key] = frozen
            snapshot.redis_reads += len(to_fetch)
        for keys in wanted.values():
            snapshot.keys_read += len(keys)
            snapshot.keys_empty += sum(1 for k in keys if not snapshot.members[k])

    def fetch(
        self,
        course_contents: Mapping[str, Iterable[str]],
        *,
        with_optional: bool = True,
        with_units: bool = True,
    ) -> RelationSnapshot:
        """Read the keys for the consumed contents of each course.

        ``course_contents`` maps a course id to the content ids consumed in it this batch.
        """
        snapshot = RelationSnapshot()
        kinds = [LEAFNODES, OPTIONALNODES] if with_optional else [LEAFNODES]
        contents = {c: sorted(set(ids)) for c, ids in course_contents.items()}
        first = {
            course: [relation_key(course, course, k) for k in kinds]
            + ([relation_key(course, content, ANCESTORS) for content in ids] if with_units else [])
            for course, ids in contents.items()
        }
        self._resolve(first, snapshot)
        if with_units:
            units = {
                course: sorted(
                    {
                        unit
                        for content in ids
                        for unit in snapshot.get(course, content, ANCESTORS)
                        if unit != course
                    }
                )
                for course, ids in contents.items()
            }
            second = {
                course: [relation_key(course, unit, k) for unit in ids for k in kinds]
                for course, ids in units.items()
                if ids
            }
            self._resolve(second, snapshot)
        return snapshot


@dataclass(frozen=True)
class RelationFrames:
    """The relation cache of one batch as small DataFrames, ready to broadcast."""

    course_nodes: DataFrame
    unit_nodes: DataFrame
    ancestors: DataFrame


def to_relation_frames(
    spark: SparkSession, snapshot: RelationSnapshot, course_contents: Mapping[str, Iterable[str]]
) -> RelationFrames:
    """Turn a snapshot into ``course_nodes`` (courses with leafnodes), ``unit_nodes`` and
    ``ancestors`` frames. Sizes follow the catalogue, not the number of users."""
    course_rows, unit_rows, ancestor_rows = [], [], []
    for course, ids in course_contents.items():
        leaves = snapshot.get(course, course, LEAFNODES)
        if leaves:
            optional = snapshot.get(course, course, OPTIONALNODES)
            course_rows.append((course, sorted(leaves), sorted(optional)))
        units: set[str] = set()
        for content in set(ids):
            anc = snapshot.get(course, content, ANCESTORS)
            if anc:
                ancestor_rows.append((course, content, sorted(anc)))
                units.update(u for u in anc if u != course)
        for unit in sorted(units):
            unit_rows.append(
                (
                    course,
                    unit,
                    sorted(snapshot.get(course, unit, LEAFNODES)),
                    sorted(snapshot.get(course, unit, OPTIONALNODES)),
                )
            )
    return RelationFrames(
        course_nodes=spark.createDataFrame(course_rows, COURSE_NODES_SCHEMA),
        unit_nodes=spark.createDataFrame(unit_rows, UNIT_NODES_SCHEMA),
        ancestors=spark.createDataFrame(ancestor_rows, ANCESTORS_SCHEMA),
    )
