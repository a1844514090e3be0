"""The job's exit codes, defined once: what a scheduler, a supervisor or a script sees."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # unexpected: a bug, or a fault not classified below
    USAGE = 2  # bad arguments or configuration
    LEASE_HELD = 3  # another backfill holds the lease (a scheduler treats it as success)
    UNREACHABLE = 4  # a store or service unreachable, or a slice failed on every attempt
    NOT_FOUND = 5  # sync/explain: no such enrolment, no consumption, or no course structure
    STUCK = 75  # EX_TEMPFAIL: a stream micro-batch stuck; the supervisor restarts it
