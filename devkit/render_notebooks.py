"""Execute both notebooks on sample data in the local stack and keep their rendered output in
``docs/notebooks/`` (the executed ``.ipynb``, and Markdown with the charts as PNG files), so a
person browsing the project sees what they show.

Run by ``./dev.sh render-notebooks`` (which starts the stack and sets ``ER_NOTEBOOK_OVERRIDES``
to its ports); writes nothing but the sample's keyspace and ``docs/notebooks/``.
"""

from __future__ import annotations

import json
import os

import nbformat
from nbclient import NotebookClient
from nbconvert import MarkdownExporter

from devkit.paths import DOCS, PROJECT_ROOT
from devkit.sample.data import generate_sample
from devkit.sample.loader import load_sample
from enrolment_reconciliation.runtime.config import load_config

OUT = DOCS / "notebooks"
KEYSPACE, REDIS_DB = "er_docs_notebooks", 7


def render(name: str, settings: dict[str, str]) -> None:
    notebook = nbformat.read(PROJECT_ROOT / "notebooks" / name, as_version=4)
    os.environ.update(settings)
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(PROJECT_ROOT)}},
    ).execute()
    stem = name.removesuffix(".ipynb")
    nbformat.write(notebook, OUT / name)
    body, resources = MarkdownExporter().from_notebook_node(
        notebook, resources={"output_files_dir": f"{stem}_files"}
    )
    for path, data in resources.get("outputs", {}).items():
        (OUT / path).parent.mkdir(parents=True, exist_ok=True)
        (OUT / path).write_bytes(data)
    (OUT / f"{stem}.md").write_text(body)
    print(f"rendered {name} -> {OUT.relative_to(PROJECT_ROOT)}/{stem}.md")


def main() -> None:
    stack = json.loads(os.environ.get("ER_NOTEBOOK_OVERRIDES", "[]"))
    overrides = [
        *stack,
        f"lms-cassandra.keyspace={KEYSPACE}",
        f"redis.database.relationCache.id={REDIS_DB}",
    ]
    sample = generate_sample(seed=3, courses=3, users=400)
    load_sample(sample, load_config(overrides=overrides), truncate=True)
    course = sample.courses[0]
    OUT.mkdir(parents=True, exist_ok=True)
    settings = {
        "ER_NOTEBOOK_OVERRIDES": json.dumps(overrides),
        "ER_NOTEBOOK_COURSE": course.course_id,
        "ER_NOTEBOOK_BATCH": course.batch_ids[0],
    }
    for name in ("course_progress.ipynb", "batch_health.ipynb"):
        render(name, settings)


if __name__ == "__main__":
    main()
