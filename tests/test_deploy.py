"""The scheduling files in deploy/ run commands the job accepts, with the documented exit codes."""

from __future__ import annotations

import configparser
import shlex

from enrolment_reconciliation.cli import _parser
from enrolment_reconciliation.runtime.exit_codes import ExitCode
from tests.helpers import ROOT

DEPLOY = ROOT / "deploy"
RELEASE = "/opt/enrolment-reconciliation"  # where the units expect ./dev.sh release DIR


def _job_args(command: str) -> list[str]:
    words = shlex.split(command)
    start = next(i for i, w in enumerate(words) if w.endswith("spark-submit.sh"))
    end = next((i for i, w in enumerate(words) if w in (">>", ">", "2>&1")), len(words))
    return words[start + 1 : end]


def _unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(DEPLOY / name)
    return unit


def test_the_crontab_line_runs_a_backfill_the_job_accepts():
    lines = [
        line
        for line in (DEPLOY / "crontab").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(lines) == 1
    schedule, command = lines[0].split(maxsplit=5)[:5], lines[0].split(maxsplit=5)[5]
    assert schedule == ["30", "1", "*", "*", "*"]
    args = _parser().parse_args(_job_args(command))
    assert (args.mode, args.config, args.max_writes_per_second) == (
        "backfill",
        "conf/production.conf",
        2000,
    )
    assert "bin/spark-submit.sh" in command and ". conf/credentials.env" in command


def test_the_systemd_units_run_the_backfill_nightly_and_the_stream_always():
    backfill = _unit("enrolment-reconciliation-backfill.service")
    args = _parser().parse_args(_job_args(backfill["Service"]["ExecStart"]))
    assert (args.mode, args.config) == ("backfill", f"{RELEASE}/conf/production.conf")
    for unit in (
        "enrolment-reconciliation-backfill.service",
        "enrolment-reconciliation-stream.service",
    ):
        service = _unit(unit)["Service"]
        assert service["ExecStart"].startswith(f"{RELEASE}/bin/spark-submit.sh ")
        assert service["EnvironmentFile"] == f"{RELEASE}/conf/credentials.env"
    assert backfill["Service"]["Type"] == "oneshot"
    assert backfill["Service"]["SuccessExitStatus"] == str(int(ExitCode.LEASE_HELD))
    timer = _unit("enrolment-reconciliation-backfill.timer")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 01:30:00"
    assert timer["Timer"]["Persistent"] == "true"
    stream = _unit("enrolment-reconciliation-stream.service")
    assert _parser().parse_args(_job_args(stream["Service"]["ExecStart"])).mode == "stream"
    assert stream["Service"]["Restart"] == "on-failure"
