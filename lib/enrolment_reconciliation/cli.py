"""Command line of the job: ``stream`` and ``sync`` (``./spark-submit.sh <mode> [options]``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from enrolment_reconciliation.config import JobConfig, add_config_arguments, load_config

log = logging.getLogger("enrolment_reconciliation")


def _parser() -> argparse.ArgumentParser:
    common = add_config_arguments(argparse.ArgumentParser(add_help=False))
    common.add_argument("--master", help="Spark master (spark-submit.sh passes it to Spark)")
    parser = argparse.ArgumentParser(prog="enrolment-reconciliation")
    modes = parser.add_subparsers(dest="mode", required=True)
    stream = modes.add_parser("stream", parents=[common], help="Kafka Structured Streaming")
    stream.add_argument("--trigger", help="processing-time=<interval> | available-now")
    stream.add_argument("--checkpoint", help="checkpoint location (stream.checkpoint.location)")
    stream.add_argument("--starting-offsets", help="earliest | latest | JSON offsets")
    stream.add_argument("--max-offsets-per-trigger", type=int)
    sync = modes.add_parser("sync", parents=[common], help="reconcile one enrolment now")
    sync.add_argument("--user", required=True)
    sync.add_argument("--course", required=True)
    sync.add_argument("--batch", required=True)
    return parser


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
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_config(args.config, env=args.env, overrides=overrides)


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("py4j", "cassandra", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging()
    cfg = config_from_args(args)
    log.info("configuration: %s", cfg)  # credentials are masked in the repr

    from enrolment_reconciliation.spark import build_spark_session

    spark = build_spark_session(
        cfg, master=args.master, app_name=f"enrolment-reconciliation-{args.mode}"
    )
    spark.sparkContext.setLogLevel("WARN")
    try:
        if args.mode == "stream":
            from enrolment_reconciliation.streaming import run_stream

            run_stream(spark, cfg)
        else:
            from enrolment_reconciliation.sync import run_sync

            print(json.dumps(run_sync(spark, cfg, args.user, args.course, args.batch), indent=2))
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
