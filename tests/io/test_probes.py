"""The stores' probes: a real request with a short timeout, true only when the store answers."""

from __future__ import annotations

import socket
import time

import pytest

from enrolment_reconciliation.io.probes import stores_down
from enrolment_reconciliation.modes.stream import _wait_to_restart
from enrolment_reconciliation.runtime.config import load_config
from tests.helpers import stack_config


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def _nowhere():
    port = _closed_port()
    return load_config(
        overrides=[
            "lms-cassandra.host=127.0.0.1",
            f"lms-cassandra.port={port}",
            "redis.host=127.0.0.1",
            f"redis.port={port}",
        ]
    )


def test_stores_that_do_not_listen_are_down():
    nowhere = _nowhere()
    assert stores_down(nowhere.cassandra, nowhere.redis) == ["cassandra", "redis"]


def test_a_restart_waits_its_backoff_while_the_stores_stay_down():
    started = time.monotonic()
    _wait_to_restart(_nowhere(), 1.0)
    assert time.monotonic() - started >= 1.0


@pytest.mark.integration
def test_the_local_stack_s_stores_answer():
    cfg = stack_config()
    assert stores_down(cfg.cassandra, cfg.redis) == []
