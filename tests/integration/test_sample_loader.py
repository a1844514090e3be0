"""load_sample against the real local Cassandra and Redis (`stack/stack.sh start`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from cassandra.cluster import Session

from devkit.sample.data import SampleData, generate_sample
from devkit.sample.loader import load_sample
from enrolment_reconciliation.io.cassandra import connect
from enrolment_reconciliation.io.relation_cache import redis_client
from enrolment_reconciliation.runtime.config import JobConfig
from tests.helpers import stack_config

pytestmark = pytest.mark.integration

KEYSPACE = "er_test_loader"
REDIS_DB = 11  # not the job's relation-cache db 10


@pytest.fixture(scope="module")
def cfg() -> JobConfig:
    return stack_config(f"redis.database.relationCache.id={REDIS_DB}", keyspace=KEYSPACE)


@pytest.fixture(scope="module")
def sample() -> SampleData:
    return generate_sample(seed=11, courses=3, users=20, batches_per_course=2)


@pytest.fixture(scope="module")
def session(cfg: JobConfig) -> Iterator[Session]:
    cluster, session = connect(cfg.cassandra)
    yield session
    cluster.shutdown()


@pytest.fixture(scope="module")
def relation_cache(cfg: JobConfig) -> Iterator[redis.Redis]:
    client = redis_client(cfg.redis)
    yield client
    client.close()


@pytest.fixture(scope="module")
def loaded(cfg: JobConfig, sample: SampleData, relation_cache: redis.Redis) -> dict[str, int]:
    # Leftovers that truncate=True must remove.
    relation_cache.sadd("stale:course:leafnodes", "do_gone")
    return load_sample(sample, cfg, truncate=True)


def _count(session: Session, table: str) -> int:
    return session.execute(f"SELECT count(*) FROM {KEYSPACE}.{table}", timeout=60).one()[0]


def test_returned_counts_match_the_sample(loaded: dict[str, int], sample: SampleData) -> None:
    assert loaded == {
        "courses": 3,
        "users": 20,
        "enrolments": sum(1 for _ in sample.enrolments()),
        "consumption": sum(1 for _ in sample.consumption()),
        "relation_cache_keys": len(sample.relation_cache()),
    }


def test_tables_hold_exactly_the_sample_rows(
    loaded: dict[str, int], session: Session, cfg: JobConfig
) -> None:
    assert _count(session, cfg.cassandra.enrolments_table) == loaded["enrolments"]
    assert _count(session, cfg.cassandra.consumption_table) == loaded["consumption"]
    assert _count(session, cfg.cassandra.activity_agg_table) == 0


def test_enrolment_row_round_trips(
    loaded: dict[str, int], session: Session, sample: SampleData, cfg: JobConfig
) -> None:
    done = next(e for e in sample.enrolments() if e.status == 2 and e.contentstatus)
    row = session.execute(
        f"SELECT * FROM {KEYSPACE}.{cfg.cassandra.enrolments_table} "
        "WHERE userid=%s AND courseid=%s AND batchid=%s",
        (done.userid, done.courseid, done.batchid),
    ).one()
    assert row.status == 2
    assert row.active is True
    assert row.progress == done.progress
    assert dict(row.contentstatus) == done.contentstatus
    # the driver returns naive UTC datetimes
    assert row.completedon == done.completedon.replace(tzinfo=None)
    assert row.enrolled_date == done.enrolled_date.replace(tzinfo=None)


def test_null_consumption_status_is_stored_as_null(
    loaded: dict[str, int], session: Session, sample: SampleData, cfg: JobConfig
) -> None:
    nulled = next(r for r in sample.consumption() if r.status is None)
    row = session.execute(
        f"SELECT status, viewcount, completedcount, last_access_time "
        f"FROM {KEYSPACE}.{cfg.cassandra.consumption_table} "
        "WHERE userid=%s AND courseid=%s AND batchid=%s AND contentid=%s",
        (nulled.userid, nulled.courseid, nulled.batchid, nulled.contentid),
    ).one()
    assert row.status is None
    assert (row.viewcount, row.completedcount) == (nulled.viewcount, nulled.completedcount)
    assert row.last_access_time == nulled.last_access_time.replace(tzinfo=None)


def test_relation_cache_keys_are_sets_with_exact_members(
    loaded: dict[str, int], relation_cache: redis.Redis, sample: SampleData
) -> None:
    assert relation_cache.dbsize() == loaded["relation_cache_keys"]
    assert not relation_cache.exists("stale:course:leafnodes")
    course = sample.courses[0]
    cid = course.course_id
    unit = course.unit_ids[0]
    leaf = course.leaf_ids[-1]
    assert relation_cache.type(f"{cid}:{cid}:leafnodes") == "set"
    assert relation_cache.smembers(f"{cid}:{cid}:leafnodes") == set(course.leaf_ids)
    assert (
        relation_cache.smembers(f"{cid}:{unit}:leafnodes")
        == course.relation_keys[f"{cid}:{unit}:leafnodes"]
    )
    assert cid in relation_cache.smembers(f"{cid}:{leaf}:ancestors")
    assert (
        relation_cache.smembers(f"{cid}:{leaf}:ancestors")
        == course.relation_keys[f"{cid}:{leaf}:ancestors"]
    )
    assert (
        relation_cache.smembers(f"{cid}:{cid}:optionalnodes")
        == course.relation_keys[f"{cid}:{cid}:optionalnodes"]
    )
    for key, members in sample.relation_cache().items():
        assert relation_cache.smembers(key) == members, key


def test_reload_replaces_set_members_and_is_idempotent(
    loaded: dict[str, int],
    cfg: JobConfig,
    sample: SampleData,
    session: Session,
    relation_cache: redis.Redis,
) -> None:
    cid = sample.courses[1].course_id
    key = f"{cid}:{cid}:leafnodes"
    relation_cache.sadd(key, "do_not_in_course")
    again = load_sample(sample, cfg, batch_rows=1)  # the one-INSERT-per-row path
    assert again == loaded
    assert relation_cache.smembers(key) == set(sample.courses[1].leaf_ids)
    assert _count(session, cfg.cassandra.consumption_table) == loaded["consumption"]
