"""The JVM door: the only module of the package that reaches py4j handles, and what it offers
(Hadoop's FileSystem by path strings, per-SparkContext caches, freeing a checkpoint)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import enrolment_reconciliation
from enrolment_reconciliation.batch.materialise import drop_materialised, materialise_lazily
from enrolment_reconciliation.runtime.jvm import HadoopFileSystem, context_key, once_per_context

PACKAGE = Path(enrolment_reconciliation.__file__).parent
DOOR = PACKAGE / "runtime" / "jvm.py"
JVM_HANDLES = re.compile(r"\._(jvm|jsc|jdf|gateway)\b|_active_spark_context|_ensure_initialized")


def test_no_module_but_the_door_names_a_py4j_handle():
    reaching = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path != DOOR
        if JVM_HANDLES.search(path.read_text())
    )
    assert reaching == []


def test_the_file_system_works_by_path_strings(spark, tmp_path):
    root = str(tmp_path / "outbox")
    fs = HadoopFileSystem(spark, root)
    fs.mkdirs(f"{root}/batch-1")
    fs.write_bytes(f"{root}/batch-1/_APPLIED", b"")
    fs.write_bytes(f"{root}/notes.txt", "ünïcode\n".encode())
    assert sorted(fs.list_names(root)) == ["batch-1", "notes.txt"]
    assert fs.list_names(root, directories=True) == ["batch-1"]
    assert fs.list_names(f"{root}/absent") == []
    assert fs.is_file(f"{root}/notes.txt") and not fs.is_file(f"{root}/batch-1")
    assert (tmp_path / "outbox" / "notes.txt").read_text() == "ünïcode\n"
    assert fs.rename(f"{root}/batch-1", f"{root}/batch-2")
    assert fs.exists(f"{root}/batch-2/_APPLIED") and not fs.exists(f"{root}/batch-1")
    assert fs.delete(f"{root}/batch-2", recursive=True)
    assert fs.list_names(root) == ["notes.txt"]


def test_a_per_context_cache_builds_once_for_any_session_of_the_context(spark):
    built = []
    cached = once_per_context(lambda session: built.append(session) or len(built))
    assert cached(spark) == 1
    assert cached(spark.newSession()) == 1  # another session, the same SparkContext
    assert built == [spark]
    assert context_key() != 0


def test_a_dropped_checkpoint_s_blocks_are_freed(spark):
    df = materialise_lazily(spark.range(100))
    assert df.count() == 100
    cached = spark.sparkContext._jsc.sc().getRDDStorageInfo()
    assert len(cached) >= 1
    drop_materialised(df)
    # the unpersist does not block: the block managers drop the blocks a moment later
    for _ in range(100):
        if len(spark.sparkContext._jsc.sc().getRDDStorageInfo()) < len(cached):
            break
        time.sleep(0.1)
    assert len(spark.sparkContext._jsc.sc().getRDDStorageInfo()) == len(cached) - 1
