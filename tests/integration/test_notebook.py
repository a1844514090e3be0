"""The example notebook runs against the local stack, shows a table and a chart, writes nothing."""

from __future__ import annotations

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

from enrolment_reconciliation.config import load_config
from enrolment_reconciliation.io.cassandra import connect_from_config
from enrolment_reconciliation.sample.data import generate_sample
from enrolment_reconciliation.sample.loader import load_sample
from tests.helpers import ROOT, stack_overrides

pytestmark = pytest.mark.integration
NOTEBOOK = ROOT / "notebooks" / "course_progress.ipynb"
KEYSPACE, REDIS_DB = "er_test_notebook", 8


def table_rows(cfg) -> tuple[list, list]:
    cluster, session = connect_from_config(cfg, keyspace=cfg.keyspace)
    try:
        return (
            sorted(tuple(r) for r in session.execute("SELECT * FROM user_enrolments")),
            sorted(tuple(r) for r in session.execute("SELECT * FROM user_activity_agg")),
        )
    finally:
        cluster.shutdown()


def outputs_of(notebook) -> tuple[str, list[str]]:
    """All text the notebook printed, and the MIME types it displayed."""
    text, mimes = [], []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out["text"])
            mimes += list(out.get("data", {}))
            text += [out["data"]["text/plain"]] if "text/plain" in out.get("data", {}) else []
    return "\n".join(text), mimes


def test_the_notebook_reads_a_course_computes_progress_and_writes_nothing():
    overrides = [*stack_overrides(KEYSPACE), f"redis.database.relationCache.id={REDIS_DB}"]
    cfg = load_config(overrides=overrides)
    sample = generate_sample(seed=3, courses=2, users=30)
    load_sample(sample, cfg, truncate=True)
    course = sample.courses[0].course_id
    before = table_rows(cfg)

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    env = {
        **os.environ,
        "ER_NOTEBOOK_OVERRIDES": json.dumps(overrides),
        "ER_NOTEBOOK_COURSE": course,
    }
    os.environ.update({k: env[k] for k in ("ER_NOTEBOOK_OVERRIDES", "ER_NOTEBOOK_COURSE")})
    try:
        NotebookClient(
            notebook,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(ROOT)}},
        ).execute()
    finally:
        for key in ("ER_NOTEBOOK_OVERRIDES", "ER_NOTEBOOK_COURSE"):
            os.environ.pop(key, None)

    text, mimes = outputs_of(notebook)
    assert f"course {course} in {KEYSPACE}" in text
    assert "statusBefore" in text and "progressBefore" in text  # the table
    assert "image/png" in mimes  # the chart
    assert f"/ course {course} / batch" in text and "required:" in text  # the explanation
    assert table_rows(cfg) == before  # nothing written
