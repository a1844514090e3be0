"""The notebooks run against the local stack, show their tables and charts, and write nothing;
``./dev.sh notebook`` starts a JupyterLab whose API lists the kernel and both notebooks."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter as Tally
from collections.abc import Iterator

import nbformat
import pytest
import requests
from nbclient import NotebookClient

from devkit.sample.data import STUCK_RATE, SampleData, generate_sample
from devkit.sample.loader import load_sample
from enrolment_reconciliation.io.cassandra import connect
from enrolment_reconciliation.runtime.config import load_config
from tests.helpers import ROOT, stack_overrides

pytestmark = pytest.mark.integration
NOTEBOOKS = ROOT / "notebooks"
KEYSPACE, REDIS_DB = "er_test_notebook", 8
OVERRIDES = [*stack_overrides(KEYSPACE), f"redis.database.relationCache.id={REDIS_DB}"]
assert STUCK_RATE > 0  # the sample has learners complete by consumption, not by status


@pytest.fixture(scope="module")
def sample() -> SampleData:
    sample = generate_sample(seed=3, courses=2, users=80)
    load_sample(sample, load_config(overrides=OVERRIDES), truncate=True)
    return sample


def execute(name: str, **env: str):
    """Run a notebook in a kernel of this venv with ``ER_NOTEBOOK_*`` settings; return it."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    settings = {"ER_NOTEBOOK_OVERRIDES": json.dumps(OVERRIDES), **env}
    os.environ.update(settings)
    try:
        NotebookClient(
            notebook,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(ROOT)}},
        ).execute()
    finally:
        for key in settings:
            os.environ.pop(key, None)
    return notebook


def table_rows(cfg) -> tuple[list, list]:
    cluster, session = connect(cfg.cassandra, keyspace=cfg.cassandra.keyspace)
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


def test_the_notebook_reads_a_course_computes_progress_and_writes_nothing(sample):
    cfg = load_config(overrides=OVERRIDES)
    course = sample.courses[0].course_id
    before = table_rows(cfg)
    notebook = execute("course_progress.ipynb", ER_NOTEBOOK_COURSE=course)
    text, mimes = outputs_of(notebook)
    assert f"course {course} in {KEYSPACE}" in text
    assert "statusBefore" in text and "progressBefore" in text  # the table
    assert "image/png" in mimes  # the chart
    assert f"/ course {course} / batch" in text and "required:" in text  # the explanation
    assert table_rows(cfg) == before  # nothing written


def printed(text: str, label: str) -> dict:
    """The JSON the notebook printed after ``label``."""
    match = re.search(re.escape(label) + r" (\{.*\})", text)
    assert match, (label, text[-2000:])
    return json.loads(match.group(1))


def test_the_batch_health_notebook_counts_statuses_and_finds_the_stuck_learners(sample):
    cfg = load_config(overrides=OVERRIDES)
    course = sample.courses[0]
    batch = course.batch_ids[0]
    key = (course.course_id, batch)
    rows = [e for e in sample.enrolments() if (e.courseid, e.batchid) == key]
    consumed = [r for r in sample.consumption() if (r.courseid, r.batchid) == key]
    before = table_rows(cfg)
    notebook = execute(
        "batch_health.ipynb", ER_NOTEBOOK_COURSE=course.course_id, ER_NOTEBOOK_BATCH=batch
    )
    text, mimes = outputs_of(notebook)
    assert table_rows(cfg) == before  # nothing written
    assert "image/png" in mimes
    statuses = printed(text, "enrolments by status:")
    assert {int(k): v for k, v in statuses.items()} == dict(Tally(e.status for e in rows))
    stuck = printed(text, "stuck:")
    # every learner made stuck by the sample (status 1, every leaf done) is found, and only
    # learners the table does not call complete
    done = {(r.userid, r.contentid) for r in consumed if r.status == 2}
    designed = {
        e.userid
        for e in rows
        if e.status == 1 and all((e.userid, leaf) in done for leaf in course.leaf_ids)
    }
    assert designed and designed <= set(stuck["completeButNotMarked"]) <= {u for u, _ in done}
    assert all(e.status < 2 for e in rows if e.userid in stuck["completeButNotMarked"])
    last = {}
    for r in consumed:
        last[r.userid] = max(last.get(r.userid, r.last_access_time), r.last_access_time)
    as_of = max(last.values()).date()
    idle = {
        e.userid
        for e in rows
        if e.status < 2 and (e.userid not in last or (as_of - last[e.userid].date()).days > 30)
    }
    assert idle and set(stuck["idle"]) == idle


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyter_lab() -> Iterator[str]:
    """``./dev.sh notebook`` on a free port; yields the URL with its token that it printed."""
    env = {**os.environ, "ER_NOTEBOOK_PORT": str(free_port())}
    server = subprocess.Popen(
        [str(ROOT / "dev.sh"), "notebook"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        url = None
        assert server.stdout is not None
        for line in server.stdout:
            found = re.search(r"open: (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "./dev.sh notebook printed no URL"
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_dev_sh_notebook_serves_both_notebooks_on_the_venv_kernel(jupyter_lab):
    base, token = jupyter_lab.split("/lab?token=")
    auth = {"Authorization": f"token {token}"}
    deadline = time.monotonic() + 60
    while True:
        try:
            kernels = requests.get(f"{base}/api/kernelspecs", headers=auth, timeout=5)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "JupyterLab did not answer"
            time.sleep(0.5)
    assert kernels.status_code == 200
    assert "python3" in kernels.json()["kernelspecs"]
    contents = requests.get(f"{base}/api/contents", headers=auth, timeout=5).json()
    names = {item["name"] for item in contents["content"]}
    assert {"course_progress.ipynb", "batch_health.ipynb"} <= names
    # and nothing without the token
    assert requests.get(f"{base}/api/contents", timeout=5).status_code == 403
