"""Redis relation cache (docs/behaviour.md §3): read the keys a batch needs, or all of them,
pipelined.

Keys are SETs written by relation-cache-updater, all prefixed by the root course id
(``core.structure``). Two ways in:

* :meth:`RelationCacheReader.fetch_for_contents` (stream, sync): the course keys and the
  ancestors of the consumed contents, then the keys of the units found; a course read for the
  first time is read whole (the ancestors of all its leaves, and all its units), so the batches
  after it find every key in the driver's copy; three pipelined round trips at most, and
  nothing at all while the copy is fresh (``relation-cache.ttl``);
* :meth:`RelationCacheReader.scan` (backfill): ``SCAN`` every key once, then pipelined
  ``SMEMBERS``, so stale keys of deleted contents count exactly as they do for the original.

A key that is not a set (``WRONGTYPE``) is a fault of that course only: it is recorded, and
that course's enrolments go to the failed topic, while every other course is reconciled.
:class:`CourseStructures` turns what was read into the one broadcast frame the core joins, and
keeps that frame (persisted) for as long as what it holds does not change; each batch broadcasts
only its own courses' rows of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import redis
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from enrolment_reconciliation.core.counters import Counter, Counts, new_counts
from enrolment_reconciliation.core.schemas import COURSE_STRUCTURE_SCHEMA
from enrolment_reconciliation.core.structure import (
    ANCESTORS,
    LEAFNODES,
    OPTIONALNODES,
    CourseStructure,
    course_structure,
    keys_for_contents,
    keys_for_units,
    parse_relation_key,
    relation_key,
)
from enrolment_reconciliation.io.search import CollectionStatusClient
from enrolment_reconciliation.runtime.config import RedisSettings

log = logging.getLogger(__name__)
SCAN_COUNT = 1000
PIPELINE_CHUNK = 2000


@dataclass
class ReadStats:
    """What one read did (the original's cache counters, and our Redis round trips)."""

    keys_read: int = 0  # every key resolved: the original's `cache-hit-count`
    keys_empty: int = 0  # keys with no members: `cache-miss-count`
    redis_reads: int = 0  # keys fetched from Redis (not from the driver's copy)

    def counts(self) -> Counts:
        return {
            Counter.CACHE_HITS: self.keys_read,
            Counter.CACHE_MISSES: self.keys_empty,
            Counter.REDIS_READS: self.redis_reads,
        }


def redis_client(
    settings: RedisSettings, *, timeout: float = 30, connect_timeout: float = 10
) -> redis.Redis:
    """A client of the relation-cache database (password from ``REDIS_PASSWORD``); the timeouts
    are in seconds."""
    return redis.Redis(
        host=settings.host,
        port=settings.port,
        db=settings.relation_cache_db,
        password=settings.password,
        socket_timeout=timeout,
        socket_connect_timeout=connect_timeout,
        decode_responses=True,
        retry_on_timeout=True,
    )


class RelationCacheReader:
    """The driver's copy of relation-cache keys: members of every key read, and key faults.

    The copy is dropped as a whole ``ttl`` seconds after it was started, so every course is
    re-read at least that often; ``generation`` changes whenever what the copy says about a
    course changes (a key read as absent changes nothing).
    """

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
        self._expires_at = 0.0
        self.members: dict[str, frozenset[str]] = {}
        self.faults: dict[str, str] = {}  # key -> the Redis type it held instead of a set
        self.generation = 0
        self._course_keys: dict[str, set[str]] = {}  # course -> its keys in `members`

    @classmethod
    def of(cls, settings: RedisSettings) -> RelationCacheReader:
        return cls(redis_client(settings), ttl_seconds=settings.relation_cache_ttl)

    def _refresh_if_expired(self) -> None:
        now = self._clock()
        if now >= self._expires_at:
            if self.members or self.faults:
                self.generation += 1
            self.members, self.faults, self._course_keys = {}, {}, {}
            self._expires_at = now + self._ttl

    def _store(self, key: str, members: frozenset[str]) -> None:
        self.members[key] = members
        parsed = parse_relation_key(key)
        if parsed:
            self._course_keys.setdefault(parsed[0], set()).add(key)

    def _smembers(self, keys: list[str]) -> None:
        """Pipelined SMEMBERS of ``keys``; a key of another type becomes a fault, not an error."""
        wrong: list[str] = []
        changed = False  # an absent key read as empty changes no course's structure
        for start in range(0, len(keys), PIPELINE_CHUNK):
            chunk = keys[start : start + PIPELINE_CHUNK]
            pipe = self._client.pipeline(transaction=False)
            for key in chunk:
                pipe.smembers(key)
            for key, result in zip(chunk, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(result, redis.ResponseError) and "WRONGTYPE" in str(result):
                    wrong.append(key)
                elif isinstance(result, Exception):
                    raise result  # an infrastructure fault: the batch fails and is retried
                else:
                    self._store(key, frozenset(result))
                    changed = changed or bool(result)
        if wrong:
            pipe = self._client.pipeline(transaction=False)
            for key in wrong:
                pipe.type(key)
            for key, held in zip(wrong, pipe.execute(), strict=True):
                self.faults[key] = f"a {held}"
                self._store(key, frozenset())
            log.error("relation-cache keys that are not sets: %s", self.faults)
        if changed or wrong:
            self.generation += 1

    def _fetch(self, keys: Iterable[str]) -> ReadStats:
        wanted = list(dict.fromkeys(keys))
        missing = [k for k in wanted if k not in self.members]
        self._smembers(missing)
        return ReadStats(
            keys_read=len(wanted),
            keys_empty=sum(1 for k in wanted if not self.members[k]),
            redis_reads=len(missing),
        )

    def _prefetch(self, keys: Iterable[str]) -> int:
        """Read the keys the copy lacks, without counting them as keys a batch asked for."""
        missing = [k for k in dict.fromkeys(keys) if k not in self.members]
        self._smembers(missing)
        return len(missing)

    def _units_above(self, course: str, contents: Iterable[str]) -> set[str]:
        return {
            unit
            for content in contents
            for unit in self.members.get(relation_key(course, content, ANCESTORS), ())
            if unit != course
        }

    def fetch_for_contents(
        self,
        course_contents: Mapping[str, Iterable[str]],
        *,
        with_optional: bool = True,
        with_units: bool = True,
    ) -> ReadStats:
        """Read the keys for the consumed contents of each course (course id -> content ids).

        The counts are those of the keys asked for (the original's per-request reads); a
        course the copy did not hold yet is also read whole (``redis_reads`` counts those keys
        too), so later batches neither read Redis nor build a new structure frame for it.
        """
        kinds = [LEAFNODES, OPTIONALNODES] if with_optional else [LEAFNODES]
        self._refresh_if_expired()  # once: the reads below build on each other (even at TTL 0)
        contents = {course: list(ids) for course, ids in course_contents.items()}
        new = [c for c in contents if relation_key(c, c, LEAFNODES) not in self.members]
        first = [
            key
            for course, ids in contents.items()
            for key in keys_for_contents(course, ids if with_units else (), kinds)
        ]
        stats = self._fetch(first)
        if not with_units:
            return stats
        leaves = {c: sorted(self.members.get(relation_key(c, c, LEAFNODES), ())) for c in new}
        prefetched = self._prefetch(
            relation_key(course, leaf, ANCESTORS) for course in new for leaf in leaves[course]
        )
        second = [
            key
            for course, ids in contents.items()
            for key in keys_for_units(course, self._units_above(course, ids), kinds)
        ]
        more = self._fetch(second)
        prefetched += self._prefetch(
            key
            for course in new
            for key in keys_for_units(course, self._units_above(course, leaves[course]), kinds)
        )
        return ReadStats(
            stats.keys_read + more.keys_read,
            stats.keys_empty + more.keys_empty,
            stats.redis_reads + more.redis_reads + prefetched,
        )

    def scan(self) -> ReadStats:
        """Read every relation-cache key with SCAN.

        The backfill's way in: one pass over the keyspace, then pipelined SMEMBERS; structure
        is bounded by the catalogue, so it may live on the driver.
        """
        self._refresh_if_expired()
        keys = [k for k in self._client.scan_iter(count=SCAN_COUNT) if parse_relation_key(k)]
        missing = [k for k in keys if k not in self.members]
        self._smembers(missing)
        return ReadStats(
            keys_read=len(keys),
            keys_empty=sum(1 for k in keys if not self.members[k]),
            redis_reads=len(missing),
        )

    def courses(self) -> set[str]:
        """Every course the copy holds a key of."""
        return set(self._course_keys)

    def structure(self, course_id: str, collection_status: str | None = None) -> CourseStructure:
        """The course as the copy knows it (read its keys first)."""
        keys = self._course_keys.get(course_id, set())
        return course_structure(
            course_id,
            {k: self.members[k] for k in keys},
            faults={k: self.faults[k] for k in keys if k in self.faults},
            collection_status=collection_status,
        )


class CourseStructures:
    """The broadcast structure frame of every course the reader holds, with search statuses.

    The frame is rebuilt only when the reader's copy or a status changes, so a steady stream
    reuses one persisted frame while the relation-cache TTL holds.
    """

    def __init__(
        self,
        spark: SparkSession,
        reader: RelationCacheReader,
        search: CollectionStatusClient,
    ) -> None:
        self._spark = spark
        self.reader = reader
        self.search = search
        self._frame: DataFrame | None = None
        self._signature: tuple | None = None
        self._statuses: dict[str, str | None] = {}
        self._courses: set[str] = set()  # every course a batch asked for

    def frame(self, course_ids: Iterable[str]) -> tuple[DataFrame, Counts]:
        """The frame covering ``course_ids`` (asking search for the ones without leafnodes)."""
        counts = new_counts(Counter.SEARCH_CALLS, Counter.BROKEN_COURSES)
        calls_before = self.search.calls
        wanted = set(course_ids)
        for course in sorted(wanted):
            structure = self.reader.structure(course)
            if structure.problem:
                counts[Counter.BROKEN_COURSES] += 1
            elif not structure.leafnodes:
                self._statuses[course] = self.search.status_of(course)
        counts[Counter.SEARCH_CALLS] = self.search.calls - calls_before
        self._courses |= wanted
        courses = self.reader.courses() | self._courses
        signature = (self.reader.generation, len(courses), tuple(sorted(self._statuses.items())))
        if signature != self._signature or self._frame is None:
            rows = [
                self.reader.structure(c, self._statuses.get(c)).to_row() for c in sorted(courses)
            ]
            frame = self._spark.createDataFrame(rows, COURSE_STRUCTURE_SCHEMA).persist()
            if self._frame is not None:
                self._frame.unpersist()
            self._frame, self._signature = frame, signature
        if wanted >= courses:
            return self._frame, counts
        # broadcast this batch's courses only: the copy may hold many more
        return self._frame.where(F.col("courseId").isin(sorted(wanted))), counts
