"""reconcile_batch on the real stack: connector direct joins, Redis relation cache, search stub."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import pytest
import redis
from chispa import assert_df_equality
from pyspark.sql import functions as F

from devkit.sample.data import generate_sample
from devkit.sample.loader import load_sample
from devkit.schema import apply_schema
from enrolment_reconciliation.batch.pipeline import BatchResources, reconcile_batch
from enrolment_reconciliation.batch.read import read_requested
from enrolment_reconciliation.core.counters import new_counts
from enrolment_reconciliation.core.schemas import ACTIVITY_AGG_SCHEMA, ENROLMENT_KEY_SCHEMA
from enrolment_reconciliation.io.cassandra import (
    connect,
    read_consumption_for,
)
from enrolment_reconciliation.io.relation_cache import RelationCacheReader, redis_client
from enrolment_reconciliation.io.search import CollectionStatusClient, SearchServiceError
from enrolment_reconciliation.runtime.config import JobConfig
from tests.helpers import (
    CASE_2,
    NOW,
    NOW_NAIVE,
    assert_updates,
    expected_updates,
    insert_consumption,
    insert_enrolments,
    put_keys,
    raw_requests,
    stack_config,
    sync_request,
)
from tests.search_stub import SearchStub

pytestmark = pytest.mark.integration
KEYSPACE, REDIS_DB = "er_test_core", 12


@pytest.fixture(scope="module")
def cfg() -> JobConfig:
    return stack_config(f"redis.database.relationCache.id={REDIS_DB}", keyspace=KEYSPACE)


@pytest.fixture(scope="module")
def cql(cfg):
    cluster, session = connect(cfg.cassandra)
    apply_schema(session, KEYSPACE)
    session.set_keyspace(KEYSPACE)
    yield session
    cluster.shutdown()


@pytest.fixture
def relation_cache(cfg) -> Iterator[redis.Redis]:
    client = redis_client(cfg.redis)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def clean(cql, relation_cache):
    for table in ("user_content_consumption", "user_enrolments", "user_activity_agg"):
        cql.execute(f"TRUNCATE {table}", timeout=60)
    return cql


def test_consumption_and_enrolment_reads_are_connector_direct_joins(spark, cfg, cql):
    keys = spark.createDataFrame([("u1", "c1", "b1")], ENROLMENT_KEY_SCHEMA)
    consumption = read_consumption_for(spark, keys, cfg.cassandra)
    progress = read_requested(spark, raw_requests(spark, [sync_request("u", "c", "b")]), cfg)
    for frame in (consumption, progress.progress):
        plan = frame._jdf.queryExecution().executedPlan().toString()
        assert "Cassandra Direct Join" in plan, plan
        assert "BatchScan" not in plan, plan
    enrolments = progress.progress._jdf.queryExecution().executedPlan().toString()
    assert "Cassandra Direct Join [userid = " in enrolments and "user_enrolments" in enrolments


def test_batch_on_the_real_stack_returns_the_expected_frames(spark, cfg, clean, relation_cache):
    put_keys(relation_cache, CASE_2)
    insert_consumption(
        clean,
        [
            ("user001", "course001", "Batch1", "R1", 2, 1, 1),
            ("user001", "course001", "Batch1", "R2", 2, 1, 1),
            ("user001", "course001", "Batch1", "R3", None, 1, 0),
            ("user001", "course001", "Batch2", "R3", 2, 1, 1),  # another batch: not requested
            ("user002", "course001", "Batch1", "R1", 2, 1, 1),  # no enrolment row
        ],
    )
    insert_enrolments(
        clean,
        [
            ("user001", "course001", "Batch1", 1, None),
            ("user001", "course001", "Batch2", 1, None),
        ],
    )
    raw = raw_requests(
        spark,
        [
            sync_request("user001", "course001", "Batch1"),
            sync_request("user001", "course001", "Batch1"),  # duplicate: reconciled once
            sync_request("user002", "course001", "Batch1"),
            sync_request("user003", "course001", "Batch1"),  # nothing consumed
            sync_request("user001", "course001", "Batch1", action="batch-enrolment-update"),
            "{oops",
        ],
    )
    resources = BatchResources(
        RelationCacheReader.of(cfg.redis), CollectionStatusClient("http://127.0.0.1:9/none")
    )
    result = reconcile_batch(spark, read_requested(spark, raw, cfg), cfg, resources, now=NOW)

    expected_aggs = spark.createDataFrame(
        [
            ("Course", a, u, "cb:Batch1", {"completedCount": n}, {"completedCount": NOW_NAIVE})
            for a, u, n in [
                ("course001", "user001", 2.0),
                ("unit1", "user001", 1.0),
                ("unit2", "user001", 1.0),
                ("course001", "user002", 1.0),
                ("unit1", "user002", 1.0),
            ]
        ],
        ACTIVITY_AGG_SCHEMA,
    )
    as_entries = {"aggregates": "agg", "agg_last_updated": "upd"}
    sortable = [F.map_entries(c).alias(a) for c, a in as_entries.items()]
    assert_df_equality(
        result.outputs.activity_aggregates.select(
            "activity_id", "user_id", "context_id", *sortable
        ),
        expected_aggs.select("activity_id", "user_id", "context_id", *sortable),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert_updates(
        result.outputs.enrolment_updates,
        expected_updates(
            spark,
            [
                (
                    "user001",
                    "course001",
                    "Batch1",
                    1,
                    2,
                    {"R1": 2, "R2": 2, "R3": 1},
                    None,
                    NOW_NAIVE,
                    False,
                )
            ],
        ),
    )
    assert result.outputs.events.count() == 0
    assert [r.reason for r in result.outputs.failed.collect()] == ["malformed JSON"]
    assert result.counters == {
        **new_counts(),
        "requests.total-events-count": 6,
        "requests.skipped-events-count": 1,
        "requests.failed-events-count": 1,
        "requests.valid-events-count": 4,
        "consumption.db-read-count": 3,
        "consumption.enrolments-with-consumption-count": 2,
        # course leafnodes + optionalnodes, 3 ancestors, 2 units x (leafnodes + optionalnodes)
        "relation-cache.cache-hit-count": 9,
        "relation-cache.cache-miss-count": 3,
        "relation-cache.redis-read-count": 9,
        "search.search-call-count": 0,
        "progress.retired-consumption-events-count": 0,
        "progress.failed-events-count": 0,
        "aggregates.activity-agg-rows-count": 5,
        "enrolment.db-read-count": 2,
        "enrolment.enrolment-update-count": 1,
        "enrolment.enrolment-complete-count": 0,
        "enrolment.cert-issue-events-count": 0,
        "enrolment.audit-events-count": 0,
        "failed.failed-events-count": 1,
    }
    result.release()

    # A second batch within the TTL reads nothing from Redis.
    again = reconcile_batch(spark, read_requested(spark, raw, cfg), cfg, resources, now=NOW)
    assert again.counters["relation-cache.redis-read-count"] == 0
    assert again.counters["relation-cache.cache-hit-count"] == 9


def test_missing_leafnodes_asks_search_once_per_ttl_and_routes_by_status(
    spark, cfg, clean, relation_cache
):
    put_keys(relation_cache, {"live:R1:ancestors": {"live"}, "gone:R1:ancestors": {"gone", "u"}})
    put_keys(relation_cache, {"gone:u:leafnodes": {"R1"}})
    insert_consumption(clean, [("u1", "live", "b", "R1", 2), ("u1", "gone", "b", "R1", 2)])
    insert_enrolments(clean, [("u1", "live", "b", 1, None), ("u1", "gone", "b", 1, None)])
    raw = raw_requests(spark, [sync_request("u1", "live", "b"), sync_request("u1", "gone", "b")])
    with SearchStub({"live": "Live", "gone": "Retired"}) as search:
        resources = BatchResources(
            RelationCacheReader.of(cfg.redis),
            CollectionStatusClient(search.base_path, ttl_seconds=3600),
        )
        result = reconcile_batch(spark, read_requested(spark, raw, cfg), cfg, resources, now=NOW)
        assert sorted(r["body"]["request"]["filters"]["identifier"] for r in search.requests) == [
            "gone",
            "live",
        ]
        second = reconcile_batch(spark, read_requested(spark, raw, cfg), cfg, resources, now=NOW)
        assert len(search.requests) == 2  # the TTL cache answered the second batch
    assert [json.loads(r.value)["courseId"] for r in result.outputs.failed.collect()] == ["live"]
    aggs = [(r.activity_id, r.aggregates) for r in result.outputs.activity_aggregates.collect()]
    assert aggs == [("u", {"completedCount": 1.0})]  # the Retired course's unit row only
    assert result.outputs.enrolment_updates.count() == 0
    assert result.counters["progress.retired-consumption-events-count"] == 1
    assert result.counters["progress.failed-events-count"] == 1
    assert second.counters["search.search-call-count"] == 0


def test_search_service_unreachable_raises_a_retryable_error(spark, cfg, clean, relation_cache):
    insert_consumption(clean, [("u1", "nocache", "b", "R1", 2)])
    raw = raw_requests(spark, [sync_request("u1", "nocache", "b")])
    with SearchStub() as search:
        search.fail_with = 503
        resources = BatchResources(
            RelationCacheReader.of(cfg.redis),
            CollectionStatusClient(search.base_path, retries=1),
        )
        with pytest.raises(SearchServiceError, match="HTTP 503"):
            reconcile_batch(spark, read_requested(spark, raw, cfg), cfg, resources, now=NOW)
        assert len(search.requests) == 2


def _oracle(sample, requested):
    """Expected course/unit completedCount and enrolment updates by the spec's rules, in Python."""
    keys = sample.relation_cache()
    rows: dict[tuple, dict[str, int]] = {}
    for r in sample.consumption():
        rows.setdefault((r.userid, r.courseid, r.batchid), {})[r.contentid] = (
            1 if r.status is None else r.status
        )
    enrolled = {(e.userid, e.courseid, e.batchid): e.status for e in sample.enrolments()}
    aggs, updates = set(), set()
    for key in requested:
        if key not in rows:
            continue
        user, course, batch = key
        statuses = rows[key]
        done = {c for c, s in statuses.items() if s == 2}

        def required(node, course=course):
            leaves = keys.get(f"{course}:{node}:leafnodes", set())
            return leaves - keys.get(f"{course}:{node}:optionalnodes", set())

        req = required(course)
        count = len(req & done)
        aggs.add((course, user, f"cb:{batch}", float(count)))
        units = set().union(*(keys.get(f"{course}:{c}:ancestors", set()) for c in statuses))
        for unit in units - {course}:
            aggs.add((unit, user, f"cb:{batch}", float(len(required(unit) & done))))
        if key in enrolled and enrolled[key] != 2:
            status = 2 if count >= len(req) else 1
            updates.add((user, course, batch, status, count, tuple(sorted(statuses.items()))))
    return aggs, updates


def test_core_over_generated_sample_data_matches_the_spec_rules(spark, cfg, cql, relation_cache):
    sample = generate_sample(seed=5, courses=4, users=60)
    load_sample(sample, cfg, truncate=True)
    requested = {(e.userid, e.courseid, e.batchid) for e in sample.enrolments()}
    requested |= {(r.userid, r.courseid, r.batchid) for r in sample.consumption()}
    raw = raw_requests(spark, [sync_request(*k) for k in sorted(requested)])
    resources = BatchResources(
        RelationCacheReader.of(cfg.redis), CollectionStatusClient("http://127.0.0.1:9/none")
    )
    result = reconcile_batch(spark, read_requested(spark, raw, cfg), cfg, resources, now=NOW)
    expected_aggs, expected_updates_ = _oracle(sample, requested)
    actual_aggs = {
        (r.activity_id, r.user_id, r.context_id, r.aggregates["completedCount"])
        for r in result.outputs.activity_aggregates.collect()
    }
    actual_updates = {
        (
            r.userid,
            r.courseid,
            r.batchid,
            r.status,
            r.progress,
            tuple(sorted(r.contentstatus.items())),
        )
        for r in result.outputs.enrolment_updates.collect()
    }
    assert actual_aggs == expected_aggs
    assert actual_updates == expected_updates_
    completed = {u for u in expected_updates_ if u[3] == 2}
    assert result.counters["enrolment.cert-issue-events-count"] == len(completed)
    assert result.outputs.events.count() == 2 * len(completed)
    assert result.counters["search.search-call-count"] == 0
    assert all(
        isinstance(r.completedon, datetime) == r.newlyCompleted
        for r in result.outputs.enrolment_updates.collect()
    )


def test_a_relation_cache_copy_without_ttl_still_holds_the_whole_course(cfg, relation_cache):
    """TTL 0 (no copy kept between batches): one read still resolves the course and its units."""
    for key, members in CASE_2.items():
        relation_cache.sadd(key, *members)
    reader = RelationCacheReader(redis_client(cfg.redis), ttl_seconds=0)
    reader.fetch_for_contents({"course001": ["R1", "R2", "R3"]})
    course = reader.structure("course001")
    assert course.leafnodes == {"R1", "R2", "R3"}
    assert course.units == {
        "unit1": (frozenset({"R1", "R3"}), frozenset()),
        "unit2": (frozenset({"R2", "R3"}), frozenset()),
    }
