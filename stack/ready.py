"""Readiness probes for the local stack (used by stack/stack.sh; usable on its own).

usage: ready.py cassandra|kafka|redis|hdfs [--host H] [--port P] [--bootstrap HOST:PORT]
                [--http-port P] [--timeout SECONDS] [--pid PID ...] [--since EPOCH] [--once]

Defaults come from the environment (as written to .stack/stack.env): CASSANDRA_HOST/CASSANDRA_PORT,
KAFKA_BOOTSTRAP, REDIS_HOST/REDIS_PORT, HDFS_URL (hdfs://HOST:PORT, the NameNode's RPC address);
hdfs --http-port (the NameNode's HTTP port) defaults to 9870.

Checks, retried until they pass or --timeout expires:
  cassandra  CQL `SELECT release_version FROM system.local` with the cassandra-driver, protocol v5
  kafka      kafka-python KafkaAdminClient.list_topics()
  redis      redis-py PING
  hdfs       the NameNode's /jmx: out of safe mode with a live DataNode; then a small file written,
             read back and deleted through WebHDFS (NameNode -> DataNode redirects; http.client)
--pid (repeatable; hdfs gets the NameNode's and the DataNode's): fail at once if one of them dies.
--since: report elapsed seconds from this epoch (stack.sh passes its own start time). --once: single
attempt.
Exit 0 = ready, 1 = not ready, 2 = bad usage / client library missing.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import getpass
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from http.client import HTTPConnection
from urllib.parse import quote, urlencode, urlsplit


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


def _http(method: str, url: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _webhdfs(method: str, base: str, path: str, op: str, body: bytes = b"", **params) -> bytes:
    """One WebHDFS call. The NameNode answers CREATE and OPEN with a redirect to a DataNode,
    which gets the data (a CREATE's body goes only there)."""
    query = urlencode({"op": op, "user.name": getpass.getuser(), **params})
    status, headers, data = _http(method, f"{base}/webhdfs/v1{quote(path)}?{query}")
    if status == 307 and "location" in headers:
        status, headers, data = _http(method, headers["location"], body)
    if status >= 300:
        text = data.decode(errors="replace")
        try:  # WebHDFS errors are {"RemoteException": {"exception": ..., "message": ...}}
            remote = json.loads(text)["RemoteException"]
            text = f"{remote['exception']}: {remote['message']}"
        except (ValueError, KeyError, TypeError):
            pass
        raise RuntimeError(f"WebHDFS {op}: HTTP {status} {text[:200]}")
    return data


def check_hdfs(host: str, http_port: int) -> str:
    """Ready once the NameNode has left safe mode with a live DataNode and a small file makes the
    round trip: created (a block allocated by the NameNode, written to the DataNode), read back,
    deleted."""
    base = f"http://{host}:{http_port}"
    status, _, data = _http("GET", f"{base}/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState")
    if status != 200:
        raise RuntimeError(f"NameNode /jmx: HTTP {status}")
    beans = json.loads(data)["beans"]
    if not beans:
        raise RuntimeError("NameNode /jmx: FSNamesystemState not registered yet")
    state, live = beans[0].get("FSState"), beans[0].get("NumLiveDataNodes", 0)
    if live < 1:
        raise RuntimeError(f"no live DataNode yet (NameNode {state})")
    if state != "Operational":
        raise RuntimeError(f"NameNode in {state}")
    path = f"/.stack-ready-{uuid.uuid4().hex}"
    payload = f"stack/ready.py probe {path}\n".encode()
    try:
        _webhdfs("PUT", base, path, "CREATE", payload, overwrite="true")
        read = _webhdfs("GET", base, path, "OPEN")
    finally:
        with contextlib.suppress(Exception):
            _webhdfs("DELETE", base, path, "DELETE")
    if read != payload:
        raise RuntimeError(f"read back {len(read)} bytes, not the {len(payload)} written")
    return f"{live} live DataNode(s), {len(payload)} bytes written and read back through WebHDFS"


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


CLIENT_MODULES = {
    "cassandra": "cassandra.cluster",
    "kafka": "kafka",
    "redis": "redis",
    "hdfs": "http.client",
}


def _target(args, env) -> tuple[str, int, str, Callable[[], str]]:
    """(host, port to pre-check, target as reported, probe) of the service, from the arguments
    or the environment."""
    svc = args.service
    if svc == "cassandra":
        host = args.host or env.get("CASSANDRA_HOST", "127.0.0.1")
        port = args.port or int(env.get("CASSANDRA_PORT", "9042"))
        return host, port, f"{host}:{port}", functools.partial(check_cassandra, host, port)
    if svc == "kafka":
        target = args.bootstrap or env.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
        host, _, p = target.rpartition(":")
        return host, int(p), target, functools.partial(check_kafka, target)
    if svc == "hdfs":  # HDFS_URL=hdfs://HOST:PORT: the NameNode's RPC address (the pre-check)
        url = urlsplit(env.get("HDFS_URL", "hdfs://127.0.0.1:8020"))
        host = args.host or url.hostname
        port = args.port or url.port
        probe = functools.partial(check_hdfs, host, args.http_port or 9870)
        return host, port, f"{host}:{port}", probe
    host = args.host or env.get("REDIS_HOST", "127.0.0.1")
    port = args.port or int(env.get("REDIS_PORT", "6379"))
    return host, port, f"{host}:{port}", functools.partial(check_redis, host, port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("service", choices=["cassandra", "kafka", "redis", "hdfs"])
    ap.add_argument("--host")
    ap.add_argument("--port", type=int)
    ap.add_argument("--bootstrap")
    ap.add_argument("--http-port", type=int, help="hdfs: the NameNode's HTTP port (default 9870)")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--pid", type=int, action="append", default=[])
    ap.add_argument("--since", type=float)
    ap.add_argument("--once", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every failed attempt")
    args = ap.parse_args(argv)

    # the client libraries log every refused connection; only the final outcome matters here
    logging.basicConfig(level=logging.CRITICAL)
    for name in ("cassandra", "kafka", "redis"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    svc = args.service
    host, port, target, probe = _target(args, os.environ)

    # import the client library up front: a missing module is a setup error, not "not ready yet"
    module = CLIENT_MODULES[svc]
    try:
        __import__(module)
    except ImportError as e:
        print(f"{svc}: cannot import {module} ({e}); pip install -e '.[test]'", file=sys.stderr)
        return 2

    t0 = args.since or time.time()
    deadline = time.time() + args.timeout
    last_err = "port not open yet"
    while True:
        dead = [pid for pid in args.pid if not _pid_alive(pid)]
        if dead:
            print(f"{svc}: process {dead[0]} exited while waiting ({last_err})", file=sys.stderr)
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
