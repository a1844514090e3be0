"""spark-submit.sh builds the command an operator's run gets: the collector of the backfill.

Spark's own spark-submit is replaced by a script that writes the arguments it was given, so the
wrapper's decisions are checked without starting a JVM.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT

PARALLEL_GC = "-XX:+UseParallelGC"


def _submitted(tmp_path: Path, *args: str, **env: str) -> list[str]:
    seen = tmp_path / "args.txt"
    fake = tmp_path / "spark-submit"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {seen}\n')
    fake.chmod(0o755)
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SPARK_CONF_DIR", "SPARK_SUBMIT_OPTS", "JAVA_TOOL_OPTIONS")
    }
    environ |= {"SPARK_SUBMIT": str(fake), "ER_SPARK_JARS": "/dev/null", **env}
    subprocess.run([str(ROOT / "spark-submit.sh"), *args], env=environ, check=True, timeout=60)
    return seen.read_text().splitlines()


def _java_options(argv: list[str]) -> dict[str, str]:
    confs = [argv[i + 1] for i, a in enumerate(argv) if a == "--conf"]
    return dict(c.split("=", 1) for c in confs if "defaultJavaOptions" in c)


def test_the_backfill_runs_on_the_throughput_collector_driver_and_executors(tmp_path):
    options = _java_options(_submitted(tmp_path, "backfill", "--dry-run", "/tmp/x"))
    assert options == {
        "spark.driver.defaultJavaOptions": PARALLEL_GC,
        "spark.executor.defaultJavaOptions": PARALLEL_GC,
    }


@pytest.mark.parametrize("mode", ["stream", "explain"])
def test_other_modes_keep_the_jvm_default_collector(tmp_path, mode):
    assert _java_options(_submitted(tmp_path, mode)) == {}


def test_a_collector_the_operator_chose_is_left_alone(tmp_path):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "spark-defaults.conf").write_text(
        "spark.driver.extraJavaOptions -XX:+UseG1GC -XX:MaxGCPauseMillis=100\n"
    )
    assert _java_options(_submitted(tmp_path, "backfill", SPARK_CONF_DIR=str(conf_dir))) == {}
    opts = "-Dspark.driver.defaultJavaOptions=-XX:+UseZGC"
    assert _java_options(_submitted(tmp_path, "backfill", SPARK_SUBMIT_OPTS=opts)) == {}
    assert _java_options(_submitted(tmp_path, "backfill", ER_BACKFILL_JAVA_OPTIONS="")) == {}
