"""Command line of the job: ``./spark-submit.sh <stream|sync|backfill|explain> [options]``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from enrolment_reconciliation.runtime.config import (
    ConfigError,
    JobConfig,
    add_config_arguments,
    load_config,
    settings_table,
)
from enrolment_reconciliation.runtime.exit_codes import ExitCode

log = logging.getLogger("enrolment_reconciliation")
RESULT_MODES = ("sync", "explain")

BACKFILL_EPILOG = """\
exit codes: 0 done (failed enrolments are counted and on the failed topic), 1 unexpected error,
2 bad arguments or configuration, 3 another backfill holds the lease, 4 Cassandra, Redis, Kafka
or the search service unreachable, or a slice failed on every attempt (the next run resumes).

A run works through its scope in slices (backfill.slices) and records each finished one; a run
that stopped is resumed by the next run of the same scope, unless --restart.
"""


RESULT_EPILOG = """\
The result is printed alone on standard output (JSON for sync and explain --json: pipe it to
jq); logs go to standard error.

exit codes: 0 done, 1 unexpected error, 2 bad arguments or configuration, 4 Cassandra, Redis,
Kafka or the search service unreachable, 5 not found: no such enrolment, no consumption for it,
or no structure for its course (each said on standard error; the result is printed all the same).
"""


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _parser() -> argparse.ArgumentParser:
    common = add_config_arguments(argparse.ArgumentParser(add_help=False))
    common.add_argument("--master", help="Spark master (spark-submit.sh passes it to Spark)")
    parser = argparse.ArgumentParser(
        prog="spark-submit.sh",
        description="Sunbird enrolment reconciliation on Apache Spark.",
        epilog="configuration keys (--set KEY=VALUE):\n" + settings_table(markdown=False),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    modes = parser.add_subparsers(dest="mode", required=True)
    stream = modes.add_parser("stream", parents=[common], help="Kafka Structured Streaming")
    stream.add_argument("--trigger", help="processing-time=<interval> | available-now")
    stream.add_argument("--checkpoint", help="checkpoint location (stream.checkpoint.location)")
    stream.add_argument("--starting-offsets", help="earliest | latest | JSON offsets")
    stream.add_argument("--max-offsets-per-trigger", type=int)
    _add_one_enrolment_modes(modes, common)
    _add_backfill_mode(modes, common)
    return parser


def _add_one_enrolment_modes(modes: Any, common: argparse.ArgumentParser) -> None:
    """``sync`` and ``explain``: one enrolment, named by user, course and batch."""
    for name, text in (
        ("sync", "reconcile one enrolment now and print what changed"),
        ("explain", "why is this learner not complete? (writes nothing)"),
    ):
        sub = modes.add_parser(
            name,
            parents=[common],
            help=text,
            description=text,
            epilog=RESULT_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("--user", required=True)
        sub.add_argument("--course", required=True)
        sub.add_argument("--batch", required=True)
        if name == "explain":
            sub.add_argument("--json", action="store_true", help="print JSON for tools")
        else:
            sub.add_argument(
                "--via-stream",
                action="store_true",
                help="ask the running stream (publish the request, wait for its answer): no "
                "Spark here, an answer in seconds",
            )
            sub.add_argument(
                "--timeout",
                type=float,
                default=30.0,
                help="--via-stream: seconds to wait for the stream's answer (default 30)",
            )


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


def _configure_logging(mode: str) -> None:
    """Logs to standard error for ``sync`` and ``explain`` (their result alone is on standard
    output, for ``jq`` and scripts); the stream's and the backfill's log lines are their output
    (progress, counters, the summary), on standard output."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr if mode in RESULT_MODES else sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,  # whatever an import configured before, this is the job's logging
    )
    for noisy in ("py4j", "cassandra", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _emit(text: str) -> None:
    """Print a mode's result: to ``ER_RESULT_FILE`` when ``spark-submit.sh`` set one (Spark
    merges the driver's stderr into its stdout; the script prints the file on its stdout)."""
    target = os.environ.get("ER_RESULT_FILE")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(text + "\n")
    else:
        print(text, flush=True)


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
        _emit(json.dumps(failed.result, indent=2))
        log.error("the stream could not sync it: %s", failed.reason)
        return ExitCode.NOT_FOUND if failed.structure else ExitCode.USAGE
    except NoStreamAnswerError as error:
        log.error("%s", error)
        return ExitCode.UNREACHABLE
    _emit(json.dumps(result, indent=2))
    if result["before"]["enrolment"] is None and result["after"]["enrolment"] is None:
        from enrolment_reconciliation.modes.enrolment_state import missing_parts

        # the stream answered, and no row was there before or after: no such enrolment
        return _found_or_not(
            missing_parts(args.user, args.course, args.batch, {"enrolment": False})
        )
    return ExitCode.OK


def _run_mode(args: argparse.Namespace, cfg: JobConfig) -> int:
    from enrolment_reconciliation.runtime.session import LONG_RUNNING_UI_LIMITS, build_spark_session

    spark = build_spark_session(
        cfg,
        master=args.master,
        app_name=f"enrolment-reconciliation-{args.mode}",
        defaults=LONG_RUNNING_UI_LIMITS if args.mode == "stream" else None,
    )
    spark.sparkContext.setLogLevel("WARN")
    try:
        if args.mode == "stream":
            from enrolment_reconciliation.modes.stream import run_stream

            run_stream(spark, cfg)
        elif args.mode == "sync":
            from enrolment_reconciliation.modes.sync import run_sync

            result = run_sync(spark, cfg, args.user, args.course, args.batch)
            _emit(json.dumps(result, indent=2))
            return _found_or_not(result["missing"])
        elif args.mode == "explain":
            from enrolment_reconciliation.modes.explain import explain_enrolment, render

            explanation = explain_enrolment(spark, cfg, args.user, args.course, args.batch)
            _emit(
                json.dumps(explanation, indent=2, default=str) if args.json else render(explanation)
            )
            return _found_or_not(explanation["missing"])
        else:
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
            print(json.dumps(summary, indent=2, default=str))
    finally:
        spark.stop()
    return ExitCode.OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.mode)
    try:
        cfg = config_from_args(args)
    except ConfigError as error:
        log.error("configuration: %s", error)
        return ExitCode.USAGE
    log.info("configuration: %s", cfg)  # credentials are masked in the repr
    from enrolment_reconciliation.io.lease import LeaseHeldError
    from enrolment_reconciliation.modes.backfill import SliceFailedError

    try:
        if args.mode == "sync" and args.via_stream:
            return _sync_via_stream(args, cfg)
        return _run_mode(args, cfg)
    except LeaseHeldError as error:
        log.error("%s", error)
        return ExitCode.LEASE_HELD
    except SliceFailedError as error:
        log.error("backfill stopped (exit %d, resumable): %s", ExitCode.UNREACHABLE, error)
        return ExitCode.UNREACHABLE
    except ConfigError as error:
        log.error("%s", error)
        return ExitCode.USAGE
    except Exception as error:
        from enrolment_reconciliation.runtime.faults import is_infrastructure_fault

        code = ExitCode.UNREACHABLE if is_infrastructure_fault(error) else ExitCode.ERROR
        log.error("%s failed (exit %d): %s", args.mode, code, str(error).splitlines()[0][:1000])
        if args.mode != "backfill":
            raise
        return code


if __name__ == "__main__":
    sys.exit(main())
