"""Sunbird Lern's enrolment reconciliation on Apache Spark.

The package is laid out as the job is built, each layer importing only the ones below it:

* ``core``: the pure reconciliation, ``DataFrame -> DataFrame`` (no I/O);
* ``io``: one module per outside system (Cassandra, Kafka, Redis, search) or durable thing;
* ``batch``: one batch of enrolments, read -> reconcile -> count -> apply, for every mode;
* ``modes``: ``stream``, ``backfill``, ``sync``, ``explain``;
* ``runtime``: configuration, the SparkSession, the JVM door, the fault judgement, logs;
* ``cli``: the command line ``spark-submit.sh`` runs.

The names below are the surface a notebook uses (imported when first used)::

    from enrolment_reconciliation import (
        BatchResources, ScanFilters, build_spark_session, load_config, read_in_scope,
        reconcile_batch,
    )

    cfg = load_config(overrides=["lms-cassandra.host=cassandra-1"])
    spark = build_spark_session(cfg)
    frames = read_in_scope(spark, cfg, ScanFilters(courses=("do_1",)))
    result = reconcile_batch(spark, frames, cfg, BatchResources.from_config(cfg))
    result.outputs.enrolment_changes.where("changed").show()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from enrolment_reconciliation.batch.apply import apply_batch
    from enrolment_reconciliation.batch.pipeline import BatchResources, BatchResult, reconcile_batch
    from enrolment_reconciliation.batch.read import SourceFrames, read_in_scope, read_requested
    from enrolment_reconciliation.core.counters import Counter
    from enrolment_reconciliation.core.reconcile import (
        BatchInputs,
        ReconcileSettings,
        Reconciliation,
        reconcile,
    )
    from enrolment_reconciliation.io.cassandra import ScanFilters
    from enrolment_reconciliation.modes.backfill import BackfillOptions, run_backfill
    from enrolment_reconciliation.modes.explain import explain_enrolment, render
    from enrolment_reconciliation.modes.sync import run_sync
    from enrolment_reconciliation.runtime.config import JobConfig, load_config
    from enrolment_reconciliation.runtime.session import build_spark_session

_SURFACE = {
    "load_config": "runtime.config",
    "JobConfig": "runtime.config",
    "build_spark_session": "runtime.session",
    "read_requested": "batch.read",
    "read_in_scope": "batch.read",
    "SourceFrames": "batch.read",
    "ScanFilters": "io.cassandra",
    "BatchResources": "batch.pipeline",
    "BatchResult": "batch.pipeline",
    "reconcile_batch": "batch.pipeline",
    "apply_batch": "batch.apply",
    "reconcile": "core.reconcile",
    "BatchInputs": "core.reconcile",
    "ReconcileSettings": "core.reconcile",
    "Reconciliation": "core.reconcile",
    "Counter": "core.counters",
    "run_sync": "modes.sync",
    "explain_enrolment": "modes.explain",
    "render": "modes.explain",
    "BackfillOptions": "modes.backfill",
    "run_backfill": "modes.backfill",
}
__all__ = [
    "BackfillOptions",
    "BatchInputs",
    "BatchResources",
    "BatchResult",
    "Counter",
    "JobConfig",
    "ReconcileSettings",
    "Reconciliation",
    "ScanFilters",
    "SourceFrames",
    "apply_batch",
    "build_spark_session",
    "explain_enrolment",
    "load_config",
    "read_in_scope",
    "read_requested",
    "reconcile",
    "reconcile_batch",
    "render",
    "run_backfill",
    "run_sync",
]


def __getattr__(name: str) -> Any:
    """The public names, imported on first use (``import enrolment_reconciliation`` stays cheap:
    ``sync --via-stream`` and Spark's Python workers import only what they use)."""
    if name not in _SURFACE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_SURFACE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
