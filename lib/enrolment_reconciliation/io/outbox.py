"""Durable outbox for AUDIT and certificate events (docs/design.md §3.3): no lost certificate.

Per batch: events are written under ``<outbox>/<batch>`` *before* the enrolment status write,
an ``_APPLIED`` marker is added right *after* it, the events are published, then the folder is
removed. On every start, applied folders still present are published first (a crash hit between
the status write and the publish). A folder without the marker belongs to a batch whose writes
may be partial; the stream re-runs that batch id from its checkpoint and merges the folder's
events with the recomputed ones (deduplicated by the deterministic ``mid``), so an enrolment
that was already switched to status 2 before the crash still gets its events.

Paths go through Hadoop's FileSystem, so the outbox can live on HDFS or an object store next to
the checkpoint when the job runs on a cluster.

A batch's events are staged by Spark (Parquet, any number of events) or, when they are few, by
the driver (:meth:`Outbox.stage_rows`: one JSON-lines file written through the same
FileSystem, no Spark job); every reader of the outbox reads either.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence

from pyspark.sql import DataFrame, SparkSession

from enrolment_reconciliation.core.schemas import EVENT_SCHEMA
from enrolment_reconciliation.io.filesystem import HadoopFileSystem

log = logging.getLogger(__name__)
APPLIED_MARKER = "_APPLIED"
DRIVER_FILE = "events.jsonl"  # events staged by the driver (few), beside Spark's Parquet parts
EVENT_FIELDS = EVENT_SCHEMA.fieldNames()


class Outbox:
    """Events of a batch kept on durable storage until they are published."""

    def __init__(self, spark: SparkSession, location: str) -> None:
        self._spark = spark
        self.location = location.rstrip("/")
        self._fs = HadoopFileSystem(spark, self.location)
        self._fs.mkdirs(self.location)

    def _path(self, *parts: str) -> str:
        """``<outbox>/<batch>/...`` (a local path or a URI alike)."""
        return "/".join([self.location, *parts])

    def has_pending(self, batch: str) -> bool:
        """Whether an earlier attempt of this batch left (completely written) events."""
        return self._fs.exists(self._path(batch, "_SUCCESS"))

    def pending(self, batch: str) -> DataFrame | None:
        """Events left by an earlier attempt of this batch (complete writes only)."""
        if not self.has_pending(batch):
            return None
        if self._fs.exists(self._path(batch, DRIVER_FILE)):
            return self._spark.read.schema(EVENT_SCHEMA).json(self._path(batch, DRIVER_FILE))
        return self._spark.read.schema(EVENT_SCHEMA).parquet(self._path(batch))

    def stage_rows(self, batch: str, rows: Sequence[Sequence[str]]) -> None:
        """Persist a few events (tuples in ``EVENT_SCHEMA`` order) from the driver, before the
        status write: one file and a ``_SUCCESS`` marker moved into place, no Spark job. For a
        batch that no earlier attempt staged (else :meth:`stage` merges with it)."""
        lines = "".join(json.dumps(dict(zip(EVENT_FIELDS, r, strict=True))) + "\n" for r in rows)
        staging = f"{batch}.staging"
        self._fs.delete(self._path(staging), recursive=True)
        for name, data in ((DRIVER_FILE, lines.encode()), ("_SUCCESS", b"")):
            self._fs.write_bytes(self._path(staging, name), data)
        self.discard(batch)
        if not self._fs.rename(self._path(staging), self._path(batch)):
            raise OSError(f"could not move the outbox of batch {batch} into place")

    def stage(self, batch: str, events: DataFrame, *, any_events: bool = True) -> bool:
        """Persist this batch's events before the status write; False if there are none.

        An earlier attempt's events of the same batch are merged in (deduplicated by mid).
        ``any_events=False`` (the batch's counts say there are none) costs no Spark job unless
        such an earlier attempt left events.
        """
        previous = self.pending(batch)
        if previous is None and not any_events:
            return False
        if previous is not None:
            merged = events.unionByName(previous).dropDuplicates(["mid"])
            # detach from the folder about to be replaced
            events = merged.localCheckpoint(eager=True)
            if events.isEmpty():
                self.discard(batch)
                return False
        staging = self._path(f"{batch}.staging")
        events.coalesce(1).write.mode("overwrite").parquet(staging)
        self.discard(batch)
        if not self._fs.rename(staging, self._path(batch)):
            raise OSError(f"could not move the outbox of batch {batch} into place")
        return True

    def mark_applied(self, batch: str) -> None:
        """Record that the enrolment writes of this batch are done (events may go out)."""
        self._fs.write_bytes(self._path(batch, APPLIED_MARKER), b"")

    def publish(self, batch: str, publish: Callable[[DataFrame], None]) -> None:
        """Publish an applied batch's events, then remove them."""
        events = self.pending(batch)
        if events is not None:
            publish(events)
        self.discard(batch)

    def discard(self, batch: str) -> None:
        self._fs.delete(self._path(batch), recursive=True)

    def applied_batches(self) -> list[str]:
        """Batches whose writes completed but whose events may not have been published."""
        folders = self._fs.list_names(self.location, directories=True)
        return sorted(b for b in folders if self._fs.exists(self._path(b, APPLIED_MARKER)))

    def unapplied_batches(self) -> list[str]:
        """Batches whose events were staged but whose writes may not all have happened (an
        attempt stopped between the two); a staging folder left half-written is not one."""
        folders = self._fs.list_names(self.location, directories=True)
        return sorted(
            b
            for b in folders
            if not b.endswith(".staging")
            and self.has_pending(b)
            and not self._fs.exists(self._path(b, APPLIED_MARKER))
        )

    def pending_count(self) -> int:
        """Batches whose events are staged and not yet published (applied or not)."""
        return len(self.applied_batches()) + len(self.unapplied_batches())

    def recover(self, publish: Callable[[DataFrame], None]) -> int:
        """Publish every applied batch left by a crash; returns how many were published."""
        batches = self.applied_batches()
        for batch in batches:
            log.warning("publishing the pending outbox of batch %s", batch)
            self.publish(batch, publish)
        return len(batches)
