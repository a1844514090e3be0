"""Explicit schemas at every boundary, and the column names in Sunbird's vocabulary.

Camel-case names (userId, courseId, batchId, contentId, completedCount) are the event and
aggregate vocabulary; lower-case ones (userid, courseid, ...) are Cassandra columns.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

SYNC_ACTION = "user-enrolment-sync"
COURSE_ACTIVITY_TYPE = "Course"  # also for unit rows: readers expect it (docs/behaviour.md §10.1)
COMPLETED_COUNT = "completedCount"
CONTEXT_PREFIX = "cb:"

# Ids a request may carry. The stores' own limits are far larger but shared: Cassandra refuses
# partition keys over 65,535 bytes, and a user_activity_agg key holds the userId together with a
# course or unit id. Real Sunbird ids are UUIDs and do_ ids (under 40 bytes), so a request with
# a longer id is refused before any read instead of failing the batch inside the connector.
MAX_ID_BYTES = 1024
# A failed event echoes the request's payload, cut to this many characters so that the failed
# event always fits in a Kafka message (the producer's max.request.size is 1 MB by default).
FAILED_PAYLOAD_MAX_CHARS = 16_384

# Enrolment status values (LMS ProjectUtil.ProgressStatus).
NOT_STARTED, IN_PROGRESS, COMPLETED = 0, 1, 2

# --- Kafka ----------------------------------------------------------------------------------
# The columns of Spark's Kafka source that the job keeps.
RAW_REQUEST_SCHEMA = StructType(
    [
        StructField("value", BinaryType(), True),
        StructField("topic", StringType(), True),
        StructField("partition", IntegerType(), True),
        StructField("offset", LongType(), True),
    ]
)

# The sync request (docs/behaviour.md §1.2). Ids are read as strings; a non-string JSON value is
# detected separately (Spark renders it as its JSON text), see core.requests.
SYNC_REQUEST_JSON_SCHEMA = StructType(
    [
        StructField("eid", StringType(), True),
        StructField("mid", StringType(), True),
        StructField(
            "edata",
            StructType(
                [
                    StructField("action", StringType(), True),
                    StructField("userId", StringType(), True),
                    StructField("courseId", StringType(), True),
                    StructField("batchId", StringType(), True),
                ]
            ),
            True,
        ),
        StructField("_corrupt_record", StringType(), True),
    ]
)

ENROLMENT_KEY = ["userId", "courseId", "batchId"]
ENROLMENT_KEY_SCHEMA = StructType([StructField(c, StringType(), False) for c in ENROLMENT_KEY])
# The same key as Cassandra columns (user_enrolments, user_content_consumption).
ENROLMENT_TABLE_KEY = ["userid", "courseid", "batchid"]


def to_table_key_names(df: DataFrame) -> DataFrame:
    """Rename the enrolment key from the event vocabulary (userId) to table columns (userid)."""
    return df.withColumnsRenamed(dict(zip(ENROLMENT_KEY, ENROLMENT_TABLE_KEY, strict=True)))


def to_event_key_names(df: DataFrame) -> DataFrame:
    """Rename the enrolment key from table columns (userid) to the event vocabulary (userId)."""
    return df.withColumnsRenamed(dict(zip(ENROLMENT_TABLE_KEY, ENROLMENT_KEY, strict=True)))


# --- Cassandra rows as the core sees them ------------------------------------------------------
CONSUMPTION_SCHEMA = StructType(
    [
        StructField("userid", StringType(), False),
        StructField("courseid", StringType(), False),
        StructField("batchid", StringType(), False),
        StructField("contentid", StringType(), False),
        StructField("status", IntegerType(), True),
        StructField("viewcount", IntegerType(), True),
        StructField("completedcount", IntegerType(), True),
    ]
)
CONSUMPTION_COLUMNS = [f.name for f in CONSUMPTION_SCHEMA.fields]

ENROLMENT_SCHEMA = StructType(
    [
        StructField("userid", StringType(), False),
        StructField("courseid", StringType(), False),
        StructField("batchid", StringType(), False),
        StructField("status", IntegerType(), True),
        StructField("progress", IntegerType(), True),
        StructField("contentstatus", MapType(StringType(), IntegerType(), True), True),
        StructField("completedon", TimestampType(), True),
    ]
)
ENROLMENT_COLUMNS = [f.name for f in ENROLMENT_SCHEMA.fields]
# What a certificate repair reads of user_enrolments and course_batch (core.repairs).
REPAIR_ENROLMENT_COLUMNS = [
    *ENROLMENT_TABLE_KEY,
    "status",
    "completedon",
    "issued_certificates",
    "certificates",
]
COURSE_BATCH_COLUMNS = ["courseid", "batchid", "cert_templates"]

# What the comparison with the table needs of user_activity_agg (write only what changes).
ACTIVITY_AGG_KEY = ["activity_type", "activity_id", "user_id", "context_id"]
CURRENT_AGGREGATES_SCHEMA = StructType(
    [
        *[StructField(c, StringType(), False) for c in ACTIVITY_AGG_KEY],
        StructField("aggregates", MapType(StringType(), DoubleType(), True), True),
    ]
)

# --- the relation cache as one broadcast row per course (core.structure) ----------------------
_IDS = ArrayType(StringType(), False)
# A unit of a course, shaped for the per-enrolment computation: its leaves, the required ones
# (leafnodes minus optionalnodes), and `under`, the contents whose ancestors name the unit (the
# ancestors relation inverted on the driver, so an enrolment finds its units by one overlap test
# per unit instead of a map lookup per consumed content).
UNIT_STRUCTURE_SCHEMA = StructType(
    [
        StructField("unitId", StringType(), False),
        StructField("leafnodes", _IDS, False),  # empty: the unit's leafnodes key is absent
        StructField("optionalnodes", _IDS, False),
        StructField("required", _IDS, False),
        StructField("under", _IDS, False),
    ]
)
COURSE_STRUCTURE_SCHEMA = StructType(
    [
        StructField("courseId", StringType(), False),
        StructField("leafnodes", _IDS, False),  # empty: the course's leafnodes key is absent
        StructField("optionalnodes", _IDS, False),
        StructField("required", _IDS, False),  # leafnodes minus optionalnodes
        StructField("units", ArrayType(UNIT_STRUCTURE_SCHEMA, False), False),  # by unitId
        # search-service status, asked only for courses without leafnodes (docs/behaviour.md §7)
        StructField("collectionStatus", StringType(), True),
        StructField("structureProblem", StringType(), True),  # a relation-cache fault
    ]
)

# --- outputs ---------------------------------------------------------------------------------
ACTIVITY_AGG_SCHEMA = StructType(
    [
        StructField("activity_type", StringType(), False),
        StructField("activity_id", StringType(), False),
        StructField("user_id", StringType(), False),
        StructField("context_id", StringType(), False),
        StructField("aggregates", MapType(StringType(), DoubleType(), False), False),
        StructField("agg_last_updated", MapType(StringType(), TimestampType(), False), False),
    ]
)

ENROLMENT_UPDATE_SCHEMA = StructType(
    [
        StructField("userid", StringType(), False),
        StructField("courseid", StringType(), False),
        StructField("batchid", StringType(), False),
        StructField("status", IntegerType(), False),
        StructField("progress", IntegerType(), False),
        StructField("contentstatus", MapType(StringType(), IntegerType(), True), True),
        StructField("completedon", TimestampType(), True),
        StructField("datetime", TimestampType(), False),
        StructField("newlyCompleted", BooleanType(), False),
    ]
)
# The columns written to user_enrolments (newlyCompleted only routes events).
ENROLMENT_WRITE_COLUMNS = [
    "userid",
    "courseid",
    "batchid",
    "status",
    "progress",
    "contentstatus",
    "completedon",
    "datetime",
]

EVENT_SCHEMA = StructType(
    [
        StructField("kind", StringType(), False),  # audit | certificate
        StructField("mid", StringType(), False),
        StructField("userId", StringType(), False),
        StructField("courseId", StringType(), False),
        StructField("batchId", StringType(), False),
        StructField("value", StringType(), False),
    ]
)
AUDIT, CERTIFICATE = "audit", "certificate"
