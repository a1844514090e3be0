"""Readiness probes for the local stack (used by stack/stack.sh; usable on its own).

usage: ready.py cassandra|kafka|redis [--host H] [--port P] [--bootstrap HOST:PORT]
                [--timeout SECONDS] [--pid PID] [--since EPOCH] [--once]

Defaults come from the environment (as written to .stack/stack.env): CASSANDRA_HOST/CASSANDRA_PORT,
KAFKA_BOOTSTRAP, REDIS_HOST/REDIS_PORT.

Checks, retried until they pass or --timeout expires:
  cassandra  CQL `SELECT release_version FROM system.local` with the cassandra-driver, protocol v5
  kafka      kafka-python KafkaAdminClient.list_topics()
  redis      redis-py PING
--pid: fail at once if that process dies while waiting. --since: report elapsed seconds from this
epoch (stack.sh passes its own start time). --once: single attempt.
Exit 0 = ready, 1 = not ready, 2 = bad usage / client library missing.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import socket
import sys
import time


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _cassandra_session(host: str, port: int, user: str | None, password: str | None):
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy

    profile = ExecutionProfile(
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc="datacenter1"), request_timeout=10
    )
    cluster = Cluster(
        [host],
        port=port,
        protocol_version=5,
        connect_timeout=5,
        control_connection_timeout=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        auth_provider=PlainTextAuthProvider(user, password) if user else None,
    )
    try:
        return cluster, cluster.connect()
    except Exception:
        cluster.shutdown()
        raise


def check_cassandra(host: str, port: int) -> str:
    """Ready once the stack's own role logs in. On a fresh data directory Cassandra's
    PasswordAuthenticator has only the default cassandra/cassandra superuser: its password is
    then changed to the generated one of .stack/secrets.env (never printed)."""
    from cassandra.cluster import NoHostAvailable

    user = os.environ.get("LMS_CASSANDRA_USERNAME")
    password = os.environ.get("LMS_CASSANDRA_PASSWORD")
    try:
        cluster, session = _cassandra_session(host, port, user, password)
    except NoHostAvailable as error:
        if not (user == "cassandra" and password and "Authentication" in str(error)):
            raise
        cluster, session = _cassandra_session(host, port, "cassandra", "cassandra")
        if not password.isalnum():  # ALTER ROLE takes no bind markers; the stack makes hex ones
            raise RuntimeError(
                "LMS_CASSANDRA_PASSWORD must be alphanumeric for the local stack"
            ) from None
        session.execute(f"ALTER ROLE cassandra WITH PASSWORD = '{password}'")
        cluster.shutdown()
        return check_cassandra(host, port)
    try:
        row = session.execute("SELECT release_version FROM system.local").one()
        return f"release_version={row[0]}, password authentication"
    finally:
        cluster.shutdown()


def check_kafka(bootstrap: str) -> str:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="stack-ready",
        request_timeout_ms=5000,
        api_version_auto_timeout_ms=5000,
    )
    try:
        topics = admin.list_topics()
        return f"{len(topics)} topic(s)"
    finally:
        admin.close()


def check_redis(host: str, port: int) -> str:
    import redis

    client = redis.Redis(
        host=host,
        port=port,
        password=os.environ.get("REDIS_PASSWORD") or None,
        socket_connect_timeout=2,
        socket_timeout=2,
    )
    try:
        if not client.ping():
            raise RuntimeError("PING returned false")
        return "PONG"
    finally:
        client.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped) still answers kill(0)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("service", choices=["cassandra", "kafka", "redis"])
    ap.add_argument("--host")
    ap.add_argument("--port", type=int)
    ap.add_argument("--bootstrap")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--since", type=float)
    ap.add_argument("--once", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every failed attempt")
    args = ap.parse_args(argv)

    # the client libraries log every refused connection; only the final outcome matters here
    logging.basicConfig(level=logging.CRITICAL)
    for name in ("cassandra", "kafka", "redis"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    env = os.environ
    svc = args.service
    if svc == "cassandra":
        host = args.host or env.get("CASSANDRA_HOST", "127.0.0.1")
        port = args.port or int(env.get("CASSANDRA_PORT", "9042"))
        target = f"{host}:{port}"
        probe = functools.partial(check_cassandra, host, port)
    elif svc == "kafka":
        target = args.bootstrap or env.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
        host, _, p = target.rpartition(":")
        port = int(p)
        probe = functools.partial(check_kafka, target)
    else:
        host = args.host or env.get("REDIS_HOST", "127.0.0.1")
        port = args.port or int(env.get("REDIS_PORT", "6379"))
        target = f"{host}:{port}"
        probe = functools.partial(check_redis, host, port)

    # import the client library up front: a missing module is a setup error, not "not ready yet"
    module = {"cassandra": "cassandra.cluster", "kafka": "kafka", "redis": "redis"}[svc]
    try:
        __import__(module)
    except ImportError as e:
        print(f"{svc}: cannot import {module} ({e}); pip install -e '.[test]'", file=sys.stderr)
        return 2

    t0 = args.since or time.time()
    deadline = time.time() + args.timeout
    last_err = "port not open yet"
    while True:
        if args.pid and not _pid_alive(args.pid):
            print(f"{svc}: process {args.pid} exited while waiting ({last_err})", file=sys.stderr)
            return 1
        if _port_open(host, port):  # cheap pre-check before building a client
            try:
                info = probe()
                print(f"{svc} ready at {target} after {time.time() - t0:.1f}s ({info})")
                return 0
            except Exception as e:  # any failure just means "not yet"
                last_err = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                if args.verbose:
                    print(f"  {time.time() - t0:6.1f}s {svc}: {last_err}", file=sys.stderr)
        else:
            last_err = f"port {port} not open"
        if args.once or time.time() >= deadline:
            elapsed = time.time() - t0
            print(f"{svc}: not ready at {target} after {elapsed:.1f}s: {last_err}", file=sys.stderr)
            return 1
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
