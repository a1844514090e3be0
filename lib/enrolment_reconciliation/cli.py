"""Command line of the job: ``./spark-submit.sh <stream|sync|backfill|explain> [options]``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from enrolment_reconciliation.core.counters import Counter
from enrolment_reconciliation.io.prometheus import RunOutcome, push_run
from enrolment_reconciliation.runtime.config import (
    ConfigError,
    JobConfig,
    add_config_arguments,
    check_state_locations,
    load_config,
)
from enrolment_reconciliation.runtime.exit_codes import ExitCode
from enrolment_reconciliation.runtime.faults import is_infrastructure_fault
from enrolment_reconciliation.runtime.logs import configure_logging, first_line, log_event
from enrolment_reconciliation.runtime.settings_doc import settings_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("enrolment_reconciliation")
RESULT_MODES = ("sync", "explain")
PUSHED_MODES = ("backfill", "sync")  # batch runs: they end before any scrape

SETTINGS_HINT = """
Every setting (--set KEY=VALUE, or a --config file): `spark-submit.sh --help` lists them with
their defaults. Spark's own options (--conf, --driver-memory, --deploy-mode, ...) pass through
to spark-submit.
"""

STREAM_EPILOG = (
    """\
exit codes: 1 a defect, 2 bad arguments or configuration, 4 a store or service unreachable
after stream.restart.max.attempts restarts, 75 a micro-batch stuck beyond its watchdog (a
supervisor restarts the stream from its checkpoint: nothing is lost).
"""
    + SETTINGS_HINT
)

BACKFILL_EPILOG = (
    """\
exit codes: 0 done (failed enrolments are counted and on the failed topic),
1 a defect (an unexpected error: not retried), 2 bad arguments or configuration,
3 another backfill holds the lease, 4 Cassandra, Redis, Kafka or the search service
unreachable, or a slice failed on every attempt (the next run resumes).

A run works through its scope in slices (backfill.slices) and records each finished one; a run
that stopped is resumed by the next run of the same scope, unless --restart.
"""
    + SETTINGS_HINT
)


RESULT_EPILOG = (
    """\
The result is printed alone on standard output (JSON for sync and explain --json: pipe it to
jq); logs go to standard error.

exit codes: 0 done, 1 a defect (an unexpected error), 2 bad arguments or configuration,
4 Cassandra, Redis, Kafka or the search service unreachable, 5 not found: no such enrolment, no
consumption for it, or no structure for its course (each said on standard error; the result is
printed all the same).
"""
    + SETTINGS_HINT
)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _parser() -> argparse.ArgumentParser:
    common = add_config_arguments(argparse.ArgumentParser(add_help=False))
    common.add_argument(
        "--master",
        help="Spark master when run without spark-submit.sh (python -m "
        "enrolment_reconciliation); spark-submit.sh hands --master to spark-submit",
    )
    parser = argparse.ArgumentParser(
        prog="spark-submit.sh",
        description="Sunbird enrolment reconciliation on Apache Spark.",
        epilog="configuration keys (--set KEY=VALUE):\n" + settings_table(markdown=False),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    modes = parser.add_subparsers(dest="mode", required=True)
    stream = modes.add_parser(
        "stream",
        parents=[common],
        help="Kafka Structured Streaming",
        description="Reconcile the sync requests of the input topic as they come, in "
        "micro-batches (processing-time), or until the topic is drained (available-now).",
        epilog=STREAM_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stream.add_argument("--trigger", help="processing-time=<interval> | available-now")
    stream.add_argument("--checkpoint", help="checkpoint location (stream.checkpoint.location)")
    stream.add_argument(
        "--starting-offsets",
        choices=("earliest", "latest"),
        help="where a new checkpoint starts reading (stream.starting.offsets)",
    )
    stream.add_argument(
        "--max-offsets-per-trigger",
        type=int,
        help="most requests per micro-batch, 0: no limit (stream.max.offsets.per.trigger)",
    )
    _add_sync_mode(modes, common)
    _add_explain_mode(modes, common)
    _add_backfill_mode(modes, common)
    return parser


def _add_enrolment(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub.add_argument("--user", required=True, help="userId of the enrolment")
    sub.add_argument("--course", required=True, help="courseId of the enrolment")
    sub.add_argument("--batch", required=True, help="batchId of the enrolment")
    return sub


def _add_sync_mode(modes: Any, common: argparse.ArgumentParser) -> None:
    text = "reconcile one enrolment now and print what changed"
    sync = _add_enrolment(
        modes.add_parser(
            "sync",
            parents=[common],
            help=text,
            description=text,
            epilog=RESULT_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    sync.add_argument(
        "--via-stream",
        action="store_true",
        help="ask the running stream (publish the request, wait for its answer): no Spark "
        "here, an answer in seconds",
    )
    sync.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="--via-stream: seconds to wait for the stream's answer (default 30)",
    )


def _add_explain_mode(modes: Any, common: argparse.ArgumentParser) -> None:
    text = "why is this learner not complete? (writes nothing)"
    explain = _add_enrolment(
        modes.add_parser(
            "explain",
            parents=[common],
            help=text,
            description=text,
            epilog=RESULT_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    explain.add_argument("--json", action="store_true", help="print JSON for tools")


def _add_backfill_mode(modes: Any, common: argparse.ArgumentParser) -> None:
    backfill = modes.add_parser(
        "backfill",
        parents=[common],
        help="reconcile every enrolment (or a subset) from full scans",
        description="Reconcile every enrolment, or those of some courses, batches or users, "
        "from connector scans; write only what changes; one run at a time (a lease).",
        epilog=BACKFILL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backfill.add_argument("--courses", type=_csv, default=(), help="C1,C2: only these courses")
    backfill.add_argument("--batches", type=_csv, default=(), help="B1,B2: only these batches")
    backfill.add_argument("--users-file", help="only the user ids in FILE (one a line)")
    backfill.add_argument(
        "--dry-run",
        metavar="DIR",
        help="touch no table or topic: write summary.json, changes.csv, the events and "
        "progress.png to DIR",
    )
    backfill.add_argument(
        "--max-writes-per-second",
        type=int,
        help="bound each writer to about N rows/s (write.max.per.second)",
    )
    backfill.add_argument("--summary", metavar="FILE", help="also write the final summary here")
    backfill.add_argument(
        "--repair-certificates",
        action="store_true",
        help="also send a certificate request for each completed enrolment in scope that holds "
        "no certificate, in a batch with a template (backfill.repair.certificates); run on demand",
    )
    backfill.add_argument(
        "--restart",
        action="store_true",
        help="start over, even if an unfinished run of the same scope could be resumed",
    )


def config_from_args(args: argparse.Namespace) -> JobConfig:
    overrides = list(args.overrides)
    trigger = getattr(args, "trigger", None)
    if trigger:
        mode, _, interval = trigger.partition("=")
        overrides.append(f"stream.trigger.mode={mode}")
        if interval:
            overrides.append(f"stream.trigger.interval={interval}")
    for flag, key in (
        ("checkpoint", "stream.checkpoint.location"),
        ("starting_offsets", "stream.starting.offsets"),
        ("max_offsets_per_trigger", "stream.max.offsets.per.trigger"),
        ("max_writes_per_second", "write.max.per.second"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_config(args.config, env=args.env, overrides=overrides)


def _emit(text: str) -> None:
    """Print a mode's result, the one thing on standard output (logs go to standard error): to
    ``ER_RESULT_FILE`` when ``spark-submit.sh`` set one (Spark merges the driver's standard
    error into its standard output; the script prints the file on its own standard output)."""
    target = os.environ.get("ER_RESULT_FILE")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(text + "\n")
    else:
        print(text, flush=True)


def _result_json(result: dict[str, Any]) -> str:
    """A run's result as one JSON line (``jq`` pretty-prints it)."""
    return json.dumps(result, default=str)


def _found_or_not(missing: list[str]) -> int:
    """``NOT_FOUND`` (each missing part said on standard error) or ``OK``."""
    for part in missing:
        log.error("not found: %s", part)
    return ExitCode.NOT_FOUND if missing else ExitCode.OK


def _sync_via_stream(args: argparse.Namespace, cfg: JobConfig) -> int:
    """``sync --via-stream``: no Spark; the running stream does the work."""
    from enrolment_reconciliation.modes.via_stream import (
        NoStreamAnswerError,
        RequestFailedError,
        sync_via_stream,
    )

    try:
        result = sync_via_stream(cfg, args.user, args.course, args.batch, timeout=args.timeout)
    except RequestFailedError as failed:
        _emit(_result_json(failed.result))
        log.error("the stream could not sync it: %s", failed.reason)
        return ExitCode.NOT_FOUND if failed.structure else ExitCode.USAGE
    except NoStreamAnswerError as error:
        log.error("%s", error)
        return ExitCode.UNREACHABLE
    _emit(_result_json(result))
    if result["before"]["enrolment"] is None and result["after"]["enrolment"] is None:
        from enrolment_reconciliation.modes.enrolment_state import missing_parts

        # the stream answered, and no row was there before or after: no such enrolment
        return _found_or_not(
            missing_parts(args.user, args.course, args.batch, {"enrolment": False})
        )
    return ExitCode.OK


def _stream(
    spark: SparkSession, cfg: JobConfig, args: argparse.Namespace, outcome: RunOutcome
) -> int:
    from enrolment_reconciliation.modes.stream import run_stream

    run_stream(spark, cfg)
    return ExitCode.OK


def _sync(
    spark: SparkSession, cfg: JobConfig, args: argparse.Namespace, outcome: RunOutcome
) -> int:
    from enrolment_reconciliation.modes.sync import run_sync

    result = run_sync(spark, cfg, args.user, args.course, args.batch)
    outcome.counters = result["counters"]
    _emit(_result_json(result))
    return _found_or_not(result["missing"])


def _explain(
    spark: SparkSession, cfg: JobConfig, args: argparse.Namespace, outcome: RunOutcome
) -> int:
    from enrolment_reconciliation.modes.explain import explain_enrolment, render

    explanation = explain_enrolment(spark, cfg, args.user, args.course, args.batch)
    _emit(_result_json(explanation) if args.json else render(explanation))
    return _found_or_not(explanation["missing"])


def _backfill(
    spark: SparkSession, cfg: JobConfig, args: argparse.Namespace, outcome: RunOutcome
) -> int:
    from enrolment_reconciliation.modes.backfill import BackfillOptions, run_backfill

    options = BackfillOptions(
        courses=args.courses,
        batches=args.batches,
        users_file=args.users_file,
        dry_run=args.dry_run,
        summary_file=args.summary,
        restart=args.restart,
        repair_certificates=args.repair_certificates,
    )
    summary = run_backfill(spark, cfg, options)
    outcome.counters = summary["counters"]
    outcome.slices = summary["slices"]
    outcome.slices_done = summary["slicesRun"] + (summary["resumedFrom"] or {}).get("slicesDone", 0)
    rows = summary["counters"].get(Counter.CONSUMPTION_ROWS_SCANNED, 0)
    outcome.rows_per_second = round(rows / max(summary["seconds"], 1e-9), 1)
    _emit(_result_json(summary))
    return ExitCode.OK


MODES: dict[str, Callable[[SparkSession, JobConfig, argparse.Namespace, RunOutcome], int]] = {
    "stream": _stream,
    "sync": _sync,
    "explain": _explain,
    "backfill": _backfill,
}


def _run_mode(args: argparse.Namespace, cfg: JobConfig, outcome: RunOutcome) -> int:
    from enrolment_reconciliation.runtime.session import (
        LONG_RUNNING_UI_LIMITS,
        build_spark_session,
        launcher_value,
        session_facts,
    )

    # state a driver on a cluster would lose is refused before any Spark starts
    master = args.master or launcher_value("spark.master") or "local[*]"
    check_state_locations(
        cfg.locations, shared=cfg.state.shared, master=master, used=_state_used(args)
    )
    spark = build_spark_session(
        cfg,
        master=args.master,
        app_name=f"enrolment-reconciliation-{args.mode}",
        defaults=LONG_RUNNING_UI_LIMITS if args.mode == "stream" else None,
    )
    spark.sparkContext.setLogLevel("WARN")
    try:
        log_event(log, "spark-session", **session_facts(spark))
        return MODES[args.mode](spark, cfg, args, outcome)
    finally:
        outcome.outbox_pending = _outbox_pending(spark, cfg, args)
        spark.stop()


def _outbox_pending(spark: SparkSession, cfg: JobConfig, args: argparse.Namespace) -> int | None:
    """The outbox batches a run leaves unpublished (reported when it pushes its outcome)."""
    # the backfill's own outbox; sync shares the stream's, whose endpoint reports it
    location = {"backfill": cfg.locations.backfill_outbox}
    if args.mode not in location or getattr(args, "dry_run", None):
        return None
    from enrolment_reconciliation.io.outbox import Outbox

    try:
        return Outbox(spark, location[args.mode]).pending_count()
    except Exception as error:  # the run's own error matters more
        log.warning("counting the outbox's pending batches failed: %s", first_line(error))
        return None


def _run_label(args: argparse.Namespace, cfg: JobConfig | None) -> str:
    """The ``mode`` label a batch run's metrics are grouped by."""
    if args.mode != "backfill":
        return args.mode
    if args.dry_run:
        return "backfill-dry-run"
    repair = args.repair_certificates or (cfg is not None and cfg.backfill.repair_certificates)
    return "backfill-repair" if repair else "backfill"


def _push(
    cfg: JobConfig | None, args: argparse.Namespace, outcome: RunOutcome, *, starting: bool = False
) -> None:
    """A batch run's start or outcome to the Pushgateway, when one is configured (never fails
    the run)."""
    if cfg is None or not cfg.metrics.pushgateway_url or args.mode not in PUSHED_MODES:
        return
    outcome.mode = _run_label(args, cfg)
    try:
        push_run(
            cfg.metrics.pushgateway_url,
            cfg.metrics.pushgateway_job,
            cfg.env,
            outcome,
            starting=starting,
        )
        log_event(
            log,
            "metrics-pushed",
            gateway=cfg.metrics.pushgateway_url,
            mode=outcome.mode,
            starting=starting,
        )
    except Exception as error:
        log_event(
            log,
            "metrics-push-failed",
            level=logging.WARNING,
            gateway=cfg.metrics.pushgateway_url,
            error=first_line(error),
        )


def _state_used(args: argparse.Namespace) -> tuple[str, ...]:
    """The settings whose locations a mode reads or writes."""
    if args.mode == "stream":
        return ("stream.checkpoint.location", "stream.outbox.location")
    if args.mode == "sync":
        return ("stream.outbox.location",)
    if args.mode == "backfill":
        staging = ("backfill.staging.location",)
        return staging if args.dry_run else (*staging, "backfill.outbox.location")
    return ()


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code a scheduler sees for ``error``: the one fault classifier decides between
    an unreachable store (4: try again later) and a defect (1: another try would repeat it)."""
    from enrolment_reconciliation.io.lease import LeaseHeldError

    if isinstance(error, LeaseHeldError):
        return ExitCode.LEASE_HELD
    if isinstance(error, ConfigError):
        return ExitCode.USAGE
    if is_infrastructure_fault(error):
        return ExitCode.UNREACHABLE
    return ExitCode.ERROR


FAULT_KINDS = {
    ExitCode.ERROR: "defect",
    ExitCode.USAGE: "usage",
    ExitCode.LEASE_HELD: "lease-held",
    ExitCode.UNREACHABLE: "unreachable",
}


def _failed(mode: str, error: BaseException) -> int:
    """Log a run's end by an error as one ``run-failed`` event (with the traceback of a defect,
    which says where it broke) and return its exit code."""
    code = exit_code_for(error)
    what = {
        ExitCode.ERROR: "a defect: not retried",
        ExitCode.UNREACHABLE: "a store or service unreachable",
    }.get(code, FAULT_KINDS.get(code, "failed"))
    log_event(
        log,
        "run-failed",
        level=logging.ERROR,
        traceback=error if code == ExitCode.ERROR else None,
        mode=mode,
        exitCode=int(code),
        kind=FAULT_KINDS.get(code, "other"),
        error=first_line(error, 1000),
        message=f"{mode} stopped (exit {int(code)}, {what})",
    )
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging()
    outcome = RunOutcome(args.mode)
    cfg = None
    try:
        cfg = config_from_args(args)
        log.info("configuration: %s", cfg)  # credentials are masked in the repr
        if args.mode == "sync" and args.via_stream:
            return _sync_via_stream(args, cfg)
        _push(cfg, args, outcome, starting=True)
        code = _run_mode(args, cfg, outcome)
    except Exception as error:
        code = _failed(args.mode, error)
    outcome.ended, outcome.exit_code = time.time(), int(code)
    _push(cfg, args, outcome)
    return code


if __name__ == "__main__":
    sys.exit(main())
