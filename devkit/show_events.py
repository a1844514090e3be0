"""Print the job's structured log events from a log file, one short line each (the demo).

python -m devkit.show_events LOG micro-batch slice phase
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from devkit.stack import log_events

SHOWN = ("time", "level", "logger")  # left out: the line says what happened, not where


def main(argv: list[str]) -> None:
    log, wanted = Path(argv[0]), set(argv[1:])
    for event in log_events(log.read_text(errors="replace")):
        if not wanted or event["event"] in wanted:
            print(json.dumps({k: v for k, v in event.items() if k not in SHOWN}))


if __name__ == "__main__":
    main(sys.argv[1:])
