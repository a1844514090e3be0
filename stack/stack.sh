#!/usr/bin/env bash
# Local service stack for development and integration tests: real servers on loopback, no docker.
#   Cassandra 5.0.x  (java ... org.apache.cassandra.service.CassandraDaemon, jars from Maven Central)
#   Kafka 3.9.1      (one KRaft broker+controller, jars from Maven Central)
#   Redis            (Debian's redis-server; installed with apt-get when missing)
#
# Usage: stack/stack.sh start  [cassandra|kafka|redis ...]   start (or reuse) servers and wait until ready
#        stack/stack.sh stop   [cassandra|kafka|redis ...]   SIGTERM, bounded wait, then SIGKILL
#        stack/stack.sh status [cassandra|kafka|redis ...]   state, pid, port, data dir, log (exit 3 if any is down)
#        stack/stack.sh logs   [-f] [cassandra|kafka|redis]  tail server logs (LOG_LINES, default 60)
#        stack/stack.sh reset  [cassandra|kafka|redis ...]   stop + wipe the data dir(s)
#        (no service name = all three)
#
# Everything lives under $STACK_DIR (default <repo>/.stack, git-ignored):
#   lib/ jars (stack/fetch-jars.sh, run automatically)  conf/ generated configs (from stack/conf templates)
#   data/<svc>/  logs/<svc>.log  run/<svc>.pid  stack.env (KEY=value settings for other scripts to source)
#   secrets.env (mode 600): the generated Cassandra and Redis passwords, as the job's environment
#   variables (LMS_CASSANDRA_USERNAME/PASSWORD, REDIS_PASSWORD); Cassandra runs PasswordAuthenticator
#   and Redis requirepass, so every client logs in as in production
#
# Env: CASSANDRA_PORT (9042) CASSANDRA_STORAGE_PORT (7000) KAFKA_PORT (9092) KAFKA_CONTROLLER_PORT (9093)
#      REDIS_PORT (6379) CASSANDRA_HEAP (1g) KAFKA_HEAP (512m) CASSANDRA_TIMEOUT (240) KAFKA_TIMEOUT (120)
#      REDIS_TIMEOUT (30) STOP_TIMEOUT (60) STACK_DIR STACK_PYTHON (<repo>/.venv/bin/python) JAVA (java)
#      CASSANDRA_JVM_OPTS / KAFKA_JVM_OPTS (extra JVM flags) CASSANDRA_MLOCK=1 (let Cassandra mlock its heap)
#      READY_VERBOSE=1 (log every failed readiness probe to run/<svc>.ready)
#      Faster Cassandra boot (~40%, C1 JIT only, lower peak throughput): CASSANDRA_JVM_OPTS=-XX:TieredStopAtLevel=1
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
STACK_DIR="${STACK_DIR:-$REPO/.stack}"
export STACK_DIR
LIB="$STACK_DIR/lib"
CONF="$STACK_DIR/conf"
DATA="$STACK_DIR/data"
LOGS="$STACK_DIR/logs"
RUN="$STACK_DIR/run"
TEMPLATES="$HERE/conf"

HOST=127.0.0.1
CASSANDRA_PORT="${CASSANDRA_PORT:-9042}"
CASSANDRA_STORAGE_PORT="${CASSANDRA_STORAGE_PORT:-7000}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${REDIS_PORT:-6379}"
CASSANDRA_HEAP="${CASSANDRA_HEAP:-1g}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
CASSANDRA_TIMEOUT="${CASSANDRA_TIMEOUT:-240}"
KAFKA_TIMEOUT="${KAFKA_TIMEOUT:-120}"
REDIS_TIMEOUT="${REDIS_TIMEOUT:-30}"
STOP_TIMEOUT="${STOP_TIMEOUT:-60}"
PY="${STACK_PYTHON:-$REPO/.venv/bin/python}"
JAVA="${JAVA:-java}"

ALL=(cassandra kafka redis)
# launch order: Cassandra first (slowest boot), Redis (instant), then Kafka (its storage format runs a JVM)
LAUNCH_ORDER=(cassandra redis kafka)

say() { printf '[stack] %s\n' "$*"; }
err() { printf '[stack] ERROR: %s\n' "$*" >&2; }
die() { err "$*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

svc_port() {
    case "$1" in cassandra) echo "$CASSANDRA_PORT" ;; kafka) echo "$KAFKA_PORT" ;; redis) echo "$REDIS_PORT" ;; esac
}
# extra ports the server binds (checked for conflicts before launch)
svc_other_ports() {
    case "$1" in cassandra) echo "$CASSANDRA_STORAGE_PORT" ;; kafka) echo "$KAFKA_CONTROLLER_PORT" ;; redis) ;; esac
}
# a string that must appear in the process command line (guards against a recycled pid)
svc_marker() {
    case "$1" in cassandra) echo "CassandraDaemon" ;; kafka) echo "kafka.Kafka" ;; redis) echo "redis-server" ;; esac
}
pidfile() { echo "$RUN/$1.pid"; }
logfile() { echo "$LOGS/$1.log"; }

# pid_alive PID: running and not a zombie (pid 1 here may not reap orphans)
pid_alive() {
    local pid="$1" state
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    state="$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null || echo '?')"
    [[ "$state" != Z ]]
}

# svc_pid SVC: prints the pid if the pid file names a live process of that server
svc_pid() {
    local f pid; f="$(pidfile "$1")"
    [[ -f "$f" ]] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    pid_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(svc_marker "$1")" || return 1
    echo "$pid"
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# parse_services ARGS... -> SERVICES array (default: all)
parse_services() {
    SERVICES=()
    local s
    for s in "$@"; do
        case "$s" in cassandra|kafka|redis) SERVICES+=("$s") ;; *) die "unknown service '$s' (cassandra|kafka|redis)" ;; esac
    done
    [[ ${#SERVICES[@]} -gt 0 ]] || SERVICES=("${ALL[@]}")
}

selected() { local s; for s in "${SERVICES[@]}"; do [[ "$s" == "$1" ]] && return 0; done; return 1; }

# ensure_secrets: generate the stack's passwords once (hex: safe in any config syntax), export them
ensure_secrets() {
    local f="$STACK_DIR/secrets.env"
    if [[ ! -s "$f" ]]; then
        mkdir -p "$STACK_DIR"
        (umask 077
         printf '# local stack credentials, generated by stack/stack.sh (never commit, never log)\n' >"$f.tmp"
         printf 'LMS_CASSANDRA_USERNAME=cassandra\nLMS_CASSANDRA_PASSWORD=%s\nREDIS_PASSWORD=%s\n' \
             "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >>"$f.tmp")
        mv "$f.tmp" "$f"
        say "generated the stack's passwords into $f"
    fi
    set -a
    # shellcheck disable=SC1090
    . "$f"
    set +a
}

# render TEMPLATE OUT KEY=VALUE... : replace @KEY@ placeholders
render() {
    local tmpl="$1" out="$2"; shift 2
    local args=() kv
    for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${args[@]}" "$tmpl" >"$out.tmp"
    if grep -q '@[A-Z_]*@' "$out.tmp"; then
        err "unfilled placeholder in $out: $(grep -o '@[A-Z_]*@' "$out.tmp" | head -1)"; return 1
    fi
    mv "$out.tmp" "$out"
}

# spawn SVC CMD... : start CMD detached (own session), stdout+stderr appended to the log, pid -> run/SVC.pid
spawn() {
    local svc="$1"; shift
    local pf log; pf="$(pidfile "$svc")"; log="$(logfile "$svc")"
    rm -f "$pf"
    printf '\n===== %s stack.sh: starting %s\n%s\n' "$(date -Is)" "$svc" "$*" >>"$log"
    # the inner shell records its own pid and execs the server, so the pid file names the JVM itself
    # (fd 9 = the stack.sh lock: must not leak into the long-lived server)
    # shellcheck disable=SC2016
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pf" "$@" >>"$log" 2>&1 </dev/null 9>&- &
    for _ in $(seq 1 50); do [[ -s "$pf" ]] && return 0; sleep 0.1; done
    die "$svc: no pid file after launch"
}

# check_ports_free SVC: refuse to launch onto ports some other process holds
check_ports_free() {
    local p
    for p in $(svc_port "$1") $(svc_other_ports "$1"); do
        if port_open "$p"; then
            err "$1: port $p is already in use by a process this stack did not start; stop it or set another port"
            return 1
        fi
    done
}

ensure_jars() {
    local need=() s
    for s in cassandra kafka; do selected "$s" && need+=("$s"); done
    [[ ${#need[@]} -gt 0 ]] || return 0
    # fetch-jars.sh is idempotent (marker files) and returns at once when everything is present;
    # spark jars come along so PySpark sessions can use .stack/lib/spark
    FETCH_JARS_QUIET=1 "$HERE/fetch-jars.sh" "${need[@]}" spark
}

ensure_python() {
    [[ -x "$PY" ]] || die "python for readiness checks not found at $PY (create the venv: python3.11 -m venv .venv && .venv/bin/pip install -e '.[test]'), or set STACK_PYTHON"
}

ensure_redis_installed() {
    command -v redis-server >/dev/null 2>&1 && return 0
    say "redis: redis-server not found, installing Debian package redis-server (apt-get)"
    local sudo=() log="$LOGS/apt-redis.log" made_policy=0
    [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
    # keep the package's init script from starting a system-wide redis on 6379
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d; made_policy=1
    fi
    local rc=0
    { "${sudo[@]}" apt-get update -q && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends redis-server; } >>"$log" 2>&1 || rc=$?
    [[ $made_policy -eq 0 ]] || "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
    if [[ $rc -ne 0 ]] || ! command -v redis-server >/dev/null 2>&1; then
        tail -n 20 "$log" >&2; die "redis: apt-get install redis-server failed (log: $log)"
    fi
    say "redis: installed $(redis-server --version | awk '{print $3}')"
}

# ---------------------------------------------------------------- launchers (return after spawning)
launch_cassandra() {
    local d="$DATA/cassandra"
    mkdir -p "$d"
    render "$TEMPLATES/cassandra.yaml" "$CONF/cassandra.yaml" \
        CASSANDRA_HOST="$HOST" CASSANDRA_PORT="$CASSANDRA_PORT" CASSANDRA_STORAGE_PORT="$CASSANDRA_STORAGE_PORT" \
        DATA_DIR="$d" || return 1
    cp "$TEMPLATES/cassandra-logback.xml" "$CONF/cassandra-logback.xml"
    local opts=() line parts jamm
    while IFS= read -r line; do
        [[ "$line" == -* ]] || continue
        read -ra parts <<<"$line"; opts+=("${parts[@]}")
    done <"$TEMPLATES/cassandra-jvm.options"
    jamm="$(ls "$LIB"/cassandra/jamm-*.jar 2>/dev/null | head -1)"
    [[ -n "$jamm" ]] && opts+=("-javaagent:$jamm")   # accurate memtable sizing (optional in 5.0)
    mkdir -p "$STACK_DIR/tmp" "$CONF/cassandra-triggers"
    # CassandraDaemon always calls mlockall(MCL_CURRENT). As root that succeeds and faults in + pins the whole
    # 1g heap (~6 s of a cold start, RSS = full heap). A tiny RLIMIT_MEMLOCK (+ dropping CAP_IPC_LOCK when root)
    # makes it fail harmlessly ("Unable to lock JVM memory" warning). CASSANDRA_MLOCK=1 keeps upstream behaviour.
    local wrap=()
    if [[ "${CASSANDRA_MLOCK:-0}" != 1 ]]; then
        command -v prlimit >/dev/null 2>&1 && wrap+=(prlimit --memlock=65536:65536)
        [[ "$(id -u)" -ne 0 ]] || ! command -v setpriv >/dev/null 2>&1 \
            || wrap+=(setpriv --bounding-set=-ipc_lock --inh-caps=-ipc_lock)
    fi
    # shellcheck disable=SC2086
    spawn cassandra "${wrap[@]}" "$JAVA" -Xms"$CASSANDRA_HEAP" -Xmx"$CASSANDRA_HEAP" "${opts[@]}" \
        -Djava.io.tmpdir="$STACK_DIR/tmp" \
        -Dcassandra.config="file://$CONF/cassandra.yaml" \
        -Dcassandra.storagedir="$d" \
        -Dcassandra.logdir="$LOGS" \
        -Dcassandra.triggers_dir="$CONF/cassandra-triggers" \
        -Dlogback.configurationFile="$CONF/cassandra-logback.xml" \
        -Dcassandra.initial_token=0 \
        -Dcassandra.superuser_setup_delay_ms=0 \
        ${CASSANDRA_JVM_OPTS:-} \
        -cp "$LIB/cassandra/*" org.apache.cassandra.service.CassandraDaemon
}

kafka_java() { # common JVM args for kafka tools and broker
    echo "-Djava.awt.headless=true -Dlog4j.configuration=file:$CONF/kafka-log4j.properties -Dkafka.logs.dir=$LOGS"
}

launch_kafka() {
    local d="$DATA/kafka" log; log="$(logfile kafka)"
    mkdir -p "$d"
    render "$TEMPLATES/kafka-server.properties" "$CONF/kafka-server.properties" \
        KAFKA_HOST="$HOST" KAFKA_PORT="$KAFKA_PORT" KAFKA_CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT" \
        DATA_DIR="$d" || return 1
    cp "$TEMPLATES/kafka-log4j.properties" "$CONF/kafka-log4j.properties"
    if [[ ! -f "$d/meta.properties" ]]; then
        local cid
        cid="$("$PY" -c 'import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if s[0] not in "-_": break
print(s)')"
        say "kafka: formatting KRaft storage in $d (cluster id $cid)"
        printf '\n===== %s stack.sh: StorageTool format\n' "$(date -Is)" >>"$log"
        # shellcheck disable=SC2046
        if ! "$JAVA" -Xmx256m $(kafka_java) -cp "$LIB/kafka/*" kafka.tools.StorageTool format \
                -t "$cid" -c "$CONF/kafka-server.properties" --ignore-formatted >>"$log" 2>&1; then
            err "kafka: StorageTool format failed"; tail -n 40 "$log" >&2; return 1
        fi
    fi
    # shellcheck disable=SC2046
    spawn kafka "$JAVA" -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
        -Djava.net.preferIPv4Stack=true $(kafka_java) ${KAFKA_JVM_OPTS:-} \
        -cp "$LIB/kafka/*" kafka.Kafka "$CONF/kafka-server.properties"
}

launch_redis() {
    local d="$DATA/redis" pf; pf="$(pidfile redis)"
    mkdir -p "$d"
    render "$TEMPLATES/redis.conf" "$CONF/redis.conf" \
        REDIS_HOST="$HOST" REDIS_PORT="$REDIS_PORT" RUN_DIR="$RUN" LOG_FILE="$(logfile redis)" \
        DATA_DIR="$d" REDIS_PASSWORD="$REDIS_PASSWORD" || return 1
    chmod 600 "$CONF/redis.conf"
    rm -f "$pf"
    # daemonizes itself and writes run/redis.pid
    redis-server "$CONF/redis.conf" >>"$(logfile redis)" 2>&1 </dev/null 9>&- \
        || { err "redis: redis-server failed to launch"; tail -n 40 "$(logfile redis)" >&2; return 1; }
    for _ in $(seq 1 50); do [[ -s "$pf" ]] && return 0; sleep 0.1; done
    err "redis: no pid file after launch"; tail -n 40 "$(logfile redis)" >&2; return 1
}

describe_wait() {
    case "$1" in
        cassandra) echo "CQL 'SELECT release_version FROM system.local' on $HOST:$CASSANDRA_PORT (protocol v5, timeout ${CASSANDRA_TIMEOUT}s)" ;;
        kafka) echo "kafka-python list_topics on $HOST:$KAFKA_PORT (timeout ${KAFKA_TIMEOUT}s)" ;;
        redis) echo "PING on $HOST:$REDIS_PORT (timeout ${REDIS_TIMEOUT}s)" ;;
    esac
}

ready_args() {
    case "$1" in
        cassandra) echo "--host $HOST --port $CASSANDRA_PORT --timeout $CASSANDRA_TIMEOUT" ;;
        kafka) echo "--bootstrap $HOST:$KAFKA_PORT --timeout $KAFKA_TIMEOUT" ;;
        redis) echo "--host $HOST --port $REDIS_PORT --timeout $REDIS_TIMEOUT" ;;
    esac
}

write_env() {
    local jars=""
    if compgen -G "$LIB/spark/*.jar" >/dev/null; then
        jars="$(ls "$LIB"/spark/*.jar | paste -sd, -)"
    fi
    cat >"$STACK_DIR/stack.env.tmp" <<EOF
# local stack settings, written by stack/stack.sh start ($(date -Is)); source this file
STACK_DIR=$STACK_DIR
CASSANDRA_HOST=$HOST
CASSANDRA_PORT=$CASSANDRA_PORT
CASSANDRA_DC=datacenter1
KAFKA_BOOTSTRAP=$HOST:$KAFKA_PORT
REDIS_HOST=$HOST
REDIS_PORT=$REDIS_PORT
SPARK_JARS=$jars
EOF
    mv "$STACK_DIR/stack.env.tmp" "$STACK_DIR/stack.env"
}

# ---------------------------------------------------------------- commands
# start_one SVC T0 REUSE_PID: (runs as a background job) launch SVC unless REUSE_PID is given, then block
# until ready.py reports it ready; ready.py output goes to run/SVC.ready
start_one() {
    local svc="$1" t0="$2" pid="$3"
    if [[ -z "$pid" ]]; then
        [[ "$svc" != redis ]] || ensure_redis_installed
        say "$svc: launching (log $(logfile "$svc"))"
        "launch_$svc" || { echo "launch failed" >"$RUN/$svc.ready"; return 1; }
        pid="$(tr -dc '0-9' <"$(pidfile "$svc")")"
        svc_port "$svc" >"$RUN/$svc.port"
    fi
    say "waiting for $svc: $(describe_wait "$svc")"
    # shellcheck disable=SC2046
    "$PY" "$HERE/ready.py" "$svc" $(ready_args "$svc") --pid "$pid" --since "$t0" \
        ${READY_VERBOSE:+--verbose} >"$RUN/$svc.ready" 2>&1
}

cmd_start() {
    parse_services "$@"
    local t0; t0="$(now)"
    mkdir -p "$CONF" "$DATA" "$LOGS" "$RUN"
    ensure_secrets
    ensure_python
    ensure_jars

    # 1. decide per service: reuse a running server, or launch (after checking its ports are free)
    local svc pid port failed=()
    declare -A reuse=() job=()
    for svc in "${LAUNCH_ORDER[@]}"; do
        selected "$svc" || continue
        port="$(svc_port "$svc")"
        if pid="$(svc_pid "$svc")"; then
            local was; was="$(cat "$RUN/$svc.port" 2>/dev/null || echo "$port")"
            if [[ "$was" != "$port" ]]; then
                err "$svc: already running (pid $pid) on port $was, not $port; stop it first"; failed+=("$svc"); continue
            fi
            if port_open "$port"; then say "$svc: already running (pid $pid, port $port)"
            else say "$svc: process $pid is up but port $port not answering yet (still starting?)"; fi
            reuse[$svc]="$pid"
        else
            rm -f "$(pidfile "$svc")" "$RUN/$svc.port" "$RUN/$svc.ready"
            check_ports_free "$svc" || { failed+=("$svc"); continue; }
            reuse[$svc]=""
        fi
    done
    write_env

    # 2. launch + wait, all services concurrently (Cassandra first: it is the slowest to boot)
    for svc in "${LAUNCH_ORDER[@]}"; do
        [[ -n "${reuse[$svc]+set}" ]] || continue
        start_one "$svc" "$t0" "${reuse[$svc]}" &
        job[$svc]=$!
    done
    for svc in "${LAUNCH_ORDER[@]}"; do
        [[ -n "${job[$svc]:-}" ]] || continue
        if wait "${job[$svc]}"; then
            say "$(tail -n 1 "$RUN/$svc.ready")"
        else
            err "$svc did not become ready: $(tail -n 1 "$RUN/$svc.ready" 2>/dev/null)"
            err "last 40 lines of $(logfile "$svc"):"
            tail -n 40 "$(logfile "$svc")" >&2 2>/dev/null || true
            failed+=("$svc")
        fi
    done
    if [[ ${#failed[@]} -gt 0 ]]; then
        err "start failed for: ${failed[*]} (after $(since "$t0")s)"; return 1
    fi
    say "stack ready after $(since "$t0")s: ${SERVICES[*]} (settings in $STACK_DIR/stack.env)"
}

cmd_stop() {
    parse_services "$@"
    local svc pid
    declare -A spid=()
    # SIGTERM everything first so the servers shut down in parallel
    for svc in "${SERVICES[@]}"; do
        if pid="$(svc_pid "$svc")"; then
            say "$svc: stopping pid $pid (SIGTERM)"
            kill -TERM "$pid" 2>/dev/null || true
            spid[$svc]="$pid"
        else
            say "$svc: not running"
            rm -f "$(pidfile "$svc")" "$RUN/$svc.port"
        fi
    done
    local deadline=$(( $(date +%s) + STOP_TIMEOUT ))
    for svc in "${SERVICES[@]}"; do
        pid="${spid[$svc]:-}"
        [[ -n "$pid" ]] || continue
        while pid_alive "$pid" && [[ $(date +%s) -lt $deadline ]]; do sleep 0.2; done
        if pid_alive "$pid"; then
            err "$svc: still running after ${STOP_TIMEOUT}s, SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            local _; for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
        fi
        say "$svc: stopped"
        rm -f "$(pidfile "$svc")" "$RUN/$svc.port"
    done
}

cmd_status() {
    parse_services "$@"
    local svc pid state port down=0
    printf '%-10s %-9s %-8s %-6s %-40s %s\n' SERVICE STATE PID PORT DATA LOG
    for svc in "${SERVICES[@]}"; do
        port="$(cat "$RUN/$svc.port" 2>/dev/null || svc_port "$svc")"
        if pid="$(svc_pid "$svc")"; then
            if port_open "$port"; then state=running; else state=starting; down=1; fi
        else
            pid=-; down=1
            if [[ -f "$(pidfile "$svc")" ]]; then state="stale-pid"; else state=stopped; fi
        fi
        printf '%-10s %-9s %-8s %-6s %-40s %s\n' "$svc" "$state" "$pid" "$port" "$DATA/$svc" "$(logfile "$svc")"
    done
    return $(( down ? 3 : 0 ))
}

cmd_logs() {
    local follow=()
    if [[ "${1:-}" == -f ]]; then follow=(-F); shift; fi
    parse_services "$@"
    local files=() svc
    for svc in "${SERVICES[@]}"; do [[ -f "$(logfile "$svc")" ]] && files+=("$(logfile "$svc")"); done
    [[ ${#files[@]} -gt 0 ]] || die "no logs yet in $LOGS"
    tail -n "${LOG_LINES:-60}" "${follow[@]}" "${files[@]}"
}

cmd_reset() {
    cmd_stop "$@"
    local svc
    for svc in "${SERVICES[@]}"; do
        say "$svc: wiping $DATA/$svc"
        rm -rf "${DATA:?}/$svc"
    done
}

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

main() {
    local cmd="${1:-}"; shift || true
    case "$cmd" in
        start|stop|reset)
            mkdir -p "$RUN"
            # one start/stop/reset at a time
            exec 9>"$RUN/stack.lock"
            flock -w 600 9 || die "another stack.sh $cmd is running (lock $RUN/stack.lock)"
            "cmd_$cmd" "$@" ;;
        status) cmd_status "$@" ;;
        logs) cmd_logs "$@" ;;
        -h|--help|help|"") usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
