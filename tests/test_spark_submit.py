"""spark-submit.sh builds the command an operator's run gets: the collector of the backfill.

Spark's own spark-submit is replaced by a script that writes the arguments it was given, so the
wrapper's decisions are checked without starting a JVM.
"""

from __future__ import annotations

import itertools
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
    # text logs unless a test asks for JSON: the JSON logging of Spark is a driver option too
    environ |= {"SPARK_SUBMIT": str(fake), "ER_SPARK_JARS": "/dev/null", "ER_LOG_FORMAT": "text"}
    environ |= env
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


def _after(argv: list[str], marker: str) -> list[str]:
    return argv[argv.index(marker) + 1 :]


def test_spark_options_pass_through_and_the_rest_goes_to_the_job(tmp_path):
    argv = _submitted(
        tmp_path,
        "backfill",
        "--conf",
        "spark.sql.shuffle.partitions=64",
        "--driver-memory",
        "2g",
        "--dry-run",
        "/tmp/report",
        "--deploy-mode=client",
        "--num-executors",
        "3",
        "--queue",
        "nightly",
        "--properties-file",
        "/etc/er/spark.properties",
        "--set",
        "backfill.slices=4",
        "--jars",
        "/opt/extra.jar",
    )
    job = str(ROOT / "jobs" / "enrolment_reconciliation_job.py")
    spark_side, job_side = argv[: argv.index(job)], _after(argv, job)
    pairs = set(itertools.pairwise(spark_side))
    for option in (
        ("--conf", "spark.sql.shuffle.partitions=64"),
        ("--driver-memory", "2g"),
        ("--num-executors", "3"),
        ("--queue", "nightly"),
        ("--properties-file", "/etc/er/spark.properties"),
    ):
        assert option in pairs, option
    assert "--deploy-mode=client" in spark_side
    assert job_side == ["backfill", "--dry-run", "/tmp/report", "--set", "backfill.slices=4"]
    assert _after(spark_side, "--jars")[0] == "/dev/null,/opt/extra.jar"  # ours, then theirs
    assert _after(spark_side, "--name")[0] == "enrolment-reconciliation-backfill"
    assert "--master" not in spark_side  # spark-defaults.conf (or Spark's local[*]) decides


def test_nothing_overrides_what_the_operator_set(tmp_path):
    argv = _submitted(tmp_path, "stream", "--name", "er-prod", "--master", "yarn")
    assert argv.count("--name") == 1 and _after(argv, "--name")[0] == "er-prod"
    assert _after(argv, "--master")[0] == "yarn"
    # not a terminal here: no console progress, and no other --conf the operator did not give
    assert [a for a in argv if a.startswith("spark.")] == []


def test_help_needs_no_spark_and_lists_every_setting():
    done = subprocess.run(
        [str(ROOT / "spark-submit.sh"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for key in ("state.location", "kafka.broker-servers", "backfill.slices"):
        assert key in done.stdout
    mode = subprocess.run(
        [str(ROOT / "spark-submit.sh"), "backfill", "--help"], capture_output=True, text=True
    )
    assert mode.returncode == 0 and "spark-submit.sh --help` lists them" in mode.stdout


def test_a_cluster_master_with_state_on_the_driver_s_disk_exits_2_before_spark_starts(tmp_path):
    done = subprocess.run(
        [str(ROOT / "spark-submit.sh"), "backfill", "--master", "spark://127.0.0.1:1",
         "--set", f"state.location={tmp_path}/state"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "ER_LOG_FORMAT": "json"},
    )  # fmt: skip
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "backfill.outbox.location is" in done.stderr and "state.shared=true" in done.stderr


def test_off_a_terminal_spark_s_own_lines_are_json_unless_the_operator_chose_logging(tmp_path):
    options = _java_options(_submitted(tmp_path, "stream", ER_LOG_FORMAT="json"))
    assert options == {
        "spark.driver.defaultJavaOptions": "-Dlog4j2.configurationFile=file:"
        f"{ROOT / 'conf' / 'spark' / 'log4j2-json.properties'}"
    }
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "log4j2.properties").write_text("rootLogger.level = info\n")
    chosen = _submitted(tmp_path, "stream", ER_LOG_FORMAT="json", SPARK_CONF_DIR=str(conf_dir))
    assert _java_options(chosen) == {}
