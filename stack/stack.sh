#!/usr/bin/env bash
# Local service stack for development and integration tests: real servers on loopback, no docker.
#   Cassandra 5.0.x  (java ... org.apache.cassandra.service.CassandraDaemon, jars from Maven Central)
#   Kafka 3.9.1      (one KRaft broker+controller, jars from Maven Central)
#   Redis            (Debian's redis-server; installed with apt-get when missing)
#   HDFS 3.3.4       on demand only (`start hdfs`): one NameNode + one DataNode, two JVMs (processes hdfs-namenode
#                    and hdfs-datanode, each with its pid file, log and data dir), jars from Maven Central (the
#                    Hadoop version of pyspark's bundled client); replication 1, permissions off; the NameNode's
#                    storage is formatted on first start (a new filesystem, so any old DataNode blocks are wiped)
#
# Usage: stack/stack.sh start  [cassandra|kafka|redis|hdfs ...]   start (or reuse) servers and wait until ready
#        stack/stack.sh stop   [cassandra|kafka|redis|hdfs ...]   SIGTERM, bounded wait, then SIGKILL
#        stack/stack.sh status [cassandra|kafka|redis|hdfs ...]   state, pid, port, data dir, log (exit 3 if any is down)
#        stack/stack.sh logs   [-f] [cassandra|kafka|redis|hdfs]  tail server logs (LOG_LINES, default 60)
#        stack/stack.sh reset  [cassandra|kafka|redis|hdfs ...]   stop + wipe the data dir(s)
#        (no service name = cassandra, kafka, redis; for stop/status/logs/reset also hdfs when it has a pid file,
#        i.e. was started and not stopped: `start` never starts HDFS unless named)
#        HDFS is ready once the NameNode is out of safe mode with a live DataNode and a small file written and read
#        back through WebHDFS succeeds; stack.env then has HDFS_URL=hdfs://127.0.0.1:<HDFS_NAMENODE_PORT>.
#
# Everything lives under $STACK_DIR (default <repo>/.stack, git-ignored):
#   lib/ jars (stack/fetch-jars.sh, run automatically)  conf/ generated configs (from stack/conf templates;
#   conf/hdfs/ is HDFS's config dir on its classpath)  data/<svc>/  logs/<svc>.log  run/<svc>.pid (HDFS: <svc> =
#   hdfs-namenode, hdfs-datanode)  stack.env (KEY=value settings for other scripts to source)
#   secrets.env (mode 600): the generated Cassandra and Redis passwords, as the job's environment
#   variables (LMS_CASSANDRA_USERNAME/PASSWORD, REDIS_PASSWORD); Cassandra runs PasswordAuthenticator
#   and Redis requirepass, so every client logs in as in production
#
# Env: CASSANDRA_PORT (9042) CASSANDRA_STORAGE_PORT (7000) KAFKA_PORT (9092) KAFKA_CONTROLLER_PORT (9093)
#      REDIS_PORT (6379) CASSANDRA_HEAP (1g) KAFKA_HEAP (512m) CASSANDRA_TIMEOUT (240) KAFKA_TIMEOUT (120)
#      REDIS_TIMEOUT (30) STOP_TIMEOUT (60) STACK_DIR STACK_PYTHON (<repo>/.venv/bin/python) JAVA (java)
#      HDFS_NAMENODE_PORT (8020, RPC: the hdfs:// URL) HDFS_NAMENODE_HTTP_PORT (9870, /jmx, WebHDFS)
#      HDFS_DATANODE_PORT (9866, block data) HDFS_DATANODE_HTTP_PORT (9864) HDFS_DATANODE_IPC_PORT (9867)
#      HDFS_HEAP (256m, each JVM) HDFS_TIMEOUT (120)  (all HDFS ports bind 127.0.0.1)
#      CASSANDRA_JVM_OPTS / KAFKA_JVM_OPTS / HDFS_JVM_OPTS (extra JVM flags) CASSANDRA_MLOCK=1 (let Cassandra mlock its heap)
#      READY_VERBOSE=1 (log every failed readiness probe to run/<svc>.ready)
#      Faster Cassandra boot (~40%, C1 JIT only, lower peak throughput): CASSANDRA_JVM_OPTS=-XX:TieredStopAtLevel=1
#      (the same for HDFS: HDFS_JVM_OPTS=-XX:TieredStopAtLevel=1, ready in ~4.5 s instead of ~7.5 s on a 2-core box)
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
HDFS_NAMENODE_PORT="${HDFS_NAMENODE_PORT:-8020}"
HDFS_NAMENODE_HTTP_PORT="${HDFS_NAMENODE_HTTP_PORT:-9870}"
HDFS_DATANODE_PORT="${HDFS_DATANODE_PORT:-9866}"
HDFS_DATANODE_HTTP_PORT="${HDFS_DATANODE_HTTP_PORT:-9864}"
HDFS_DATANODE_IPC_PORT="${HDFS_DATANODE_IPC_PORT:-9867}"
HDFS_HEAP="${HDFS_HEAP:-256m}"
CASSANDRA_HEAP="${CASSANDRA_HEAP:-1g}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
CASSANDRA_TIMEOUT="${CASSANDRA_TIMEOUT:-240}"
KAFKA_TIMEOUT="${KAFKA_TIMEOUT:-120}"
REDIS_TIMEOUT="${REDIS_TIMEOUT:-30}"
HDFS_TIMEOUT="${HDFS_TIMEOUT:-120}"
STOP_TIMEOUT="${STOP_TIMEOUT:-60}"
PY="${STACK_PYTHON:-$REPO/.venv/bin/python}"
JAVA="${JAVA:-java}"

ALL=(cassandra kafka redis)          # the default set; HDFS starts only when named
# launch order: Cassandra first (slowest boot), Redis (instant), then Kafka (its storage format runs a JVM), HDFS
LAUNCH_ORDER=(cassandra redis kafka hdfs)

say() { printf '[stack] %s\n' "$*"; }
err() { printf '[stack] ERROR: %s\n' "$*" >&2; }
die() { err "$*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# svc_procs SVC: the server processes of a service (each has its own pid file, log, port file and data dir)
svc_procs() {
    case "$1" in hdfs) echo "hdfs-namenode hdfs-datanode" ;; *) echo "$1" ;; esac
}
# svc_port SVC|PROC: the port that says the process is up
svc_port() {
    case "$1" in
        cassandra) echo "$CASSANDRA_PORT" ;; kafka) echo "$KAFKA_PORT" ;; redis) echo "$REDIS_PORT" ;;
        hdfs|hdfs-namenode) echo "$HDFS_NAMENODE_PORT" ;; hdfs-datanode) echo "$HDFS_DATANODE_PORT" ;;
    esac
}
# extra ports the server binds (checked for conflicts before launch)
svc_other_ports() {
    case "$1" in
        cassandra) echo "$CASSANDRA_STORAGE_PORT" ;; kafka) echo "$KAFKA_CONTROLLER_PORT" ;; redis) ;;
        hdfs-namenode) echo "$HDFS_NAMENODE_HTTP_PORT" ;;
        hdfs-datanode) echo "$HDFS_DATANODE_HTTP_PORT $HDFS_DATANODE_IPC_PORT" ;;
    esac
}
# a string that must appear in the process command line (guards against a recycled pid)
svc_marker() {
    case "$1" in
        cassandra) echo "CassandraDaemon" ;; kafka) echo "kafka.Kafka" ;; redis) echo "redis-server" ;;
        hdfs-namenode) echo "org.apache.hadoop.hdfs.server.namenode.NameNode" ;;
        hdfs-datanode) echo "org.apache.hadoop.hdfs.server.datanode.DataNode" ;;
    esac
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

# hdfs_started: HDFS has a pid file (started and not stopped since, or crashed)
hdfs_started() { [[ -f "$(pidfile hdfs-namenode)" || -f "$(pidfile hdfs-datanode)" ]]; }

# parse_services CMD ARGS... -> SERVICES array (default: the ALL set; for commands other than start also hdfs when
# hdfs_started, so `stop` leaves no HDFS JVMs behind)
parse_services() {
    local cmd="$1"; shift
    SERVICES=()
    local s
    for s in "$@"; do
        case "$s" in cassandra|kafka|redis|hdfs) SERVICES+=("$s") ;; *) die "unknown service '$s' (cassandra|kafka|redis|hdfs)" ;; esac
    done
    if [[ ${#SERVICES[@]} -eq 0 ]]; then
        SERVICES=("${ALL[@]}")
        [[ "$cmd" == start ]] || ! hdfs_started || SERVICES+=(hdfs)
    fi
}

# procs_of SERVICES... : their processes, one per line
procs_of() { local s; for s in "$@"; do svc_procs "$s"; done | tr ' ' '\n'; }

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
    for s in cassandra kafka hdfs; do selected "$s" && need+=("$s"); done
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

# hdfs_jvm: JVM arguments common to the NameNode, the DataNode and the NameNode format (-> HDFS_JVM); conf/hdfs
# first on the classpath (core-site.xml, hdfs-site.xml, log4j.properties and the webapps/ folders HttpServer2 wants)
hdfs_jvm() {
    HDFS_JVM=(-XX:+ExitOnOutOfMemoryError -Djava.net.preferIPv4Stack=true -Djava.io.tmpdir="$STACK_DIR/tmp"
              -cp "$CONF/hdfs:$LIB/hdfs/*")
}

# launch_hdfs PROC... : launch the named HDFS processes (hdfs-namenode, hdfs-datanode); formats the NameNode's
# storage first when it has none
launch_hdfs() {
    local nn="$DATA/hdfs-namenode" dn="$DATA/hdfs-datanode" c="$CONF/hdfs" log proc pid
    log="$(logfile hdfs-namenode)"
    # HttpServer2 looks up webapps/<name> on the classpath; Maven's hadoop-hdfs jar ships none (the web UI's pages
    # are in the binary tarball), so /jmx, /conf and WebHDFS are served from empty webapp folders (no UI pages)
    mkdir -p "$nn" "$dn" "$c/webapps/hdfs" "$c/webapps/datanode" "$STACK_DIR/tmp"
    render "$TEMPLATES/hdfs-core-site.xml" "$c/core-site.xml" \
        HDFS_HOST="$HOST" HDFS_NAMENODE_PORT="$HDFS_NAMENODE_PORT" TMP_DIR="$STACK_DIR/tmp/hadoop" || return 1
    render "$TEMPLATES/hdfs-site.xml" "$c/hdfs-site.xml" \
        HDFS_HOST="$HOST" HDFS_NAMENODE_PORT="$HDFS_NAMENODE_PORT" HDFS_NAMENODE_HTTP_PORT="$HDFS_NAMENODE_HTTP_PORT" \
        HDFS_DATANODE_PORT="$HDFS_DATANODE_PORT" HDFS_DATANODE_HTTP_PORT="$HDFS_DATANODE_HTTP_PORT" \
        HDFS_DATANODE_IPC_PORT="$HDFS_DATANODE_IPC_PORT" NAME_DIR="$nn" DATA_DIR="$dn" || return 1
    cp "$TEMPLATES/hdfs-log4j.properties" "$c/log4j.properties"
    hdfs_jvm
    if [[ ! -f "$nn/current/VERSION" ]]; then
        # a new filesystem: blocks an older one left in the DataNode's dir belong to another cluster id
        if pid="$(svc_pid hdfs-datanode)"; then
            err "hdfs: the NameNode has no storage yet but a DataNode (pid $pid) is running; stop hdfs first"; return 1
        fi
        if [[ -n "$(ls -A "$dn")" ]]; then say "hdfs: wiping the DataNode's blocks of an older filesystem in $dn"; fi
        rm -rf "${dn:?}" && mkdir -p "$dn"
        say "hdfs: formatting NameNode storage in $nn"
        printf '\n===== %s stack.sh: NameNode -format\n' "$(date -Is)" >>"$log"
        if ! "$JAVA" -Xmx"$HDFS_HEAP" "${HDFS_JVM[@]}" org.apache.hadoop.hdfs.server.namenode.NameNode \
                -format -force -nonInteractive >>"$log" 2>&1; then
            err "hdfs: NameNode -format failed"; tail -n 40 "$log" >&2; return 1
        fi
    fi
    # --add-opens java.lang (NameNode only): its WebHDFS (Jersey 1) builds a JAXB context on the first request and
    # jaxb-impl 2.2 injects accessor classes through ClassLoader.defineClass (InaccessibleObjectException on Java 17)
    for proc in "$@"; do
        # shellcheck disable=SC2086
        case "$proc" in
            hdfs-namenode) spawn hdfs-namenode "$JAVA" -Xms"$HDFS_HEAP" -Xmx"$HDFS_HEAP" \
                --add-opens java.base/java.lang=ALL-UNNAMED "${HDFS_JVM[@]}" ${HDFS_JVM_OPTS:-} \
                org.apache.hadoop.hdfs.server.namenode.NameNode ;;
            hdfs-datanode) spawn hdfs-datanode "$JAVA" -Xms"$HDFS_HEAP" -Xmx"$HDFS_HEAP" "${HDFS_JVM[@]}" \
                ${HDFS_JVM_OPTS:-} org.apache.hadoop.hdfs.server.datanode.DataNode ;;
        esac
    done
}

describe_wait() {
    case "$1" in
        cassandra) echo "CQL 'SELECT release_version FROM system.local' on $HOST:$CASSANDRA_PORT (protocol v5, timeout ${CASSANDRA_TIMEOUT}s)" ;;
        kafka) echo "kafka-python list_topics on $HOST:$KAFKA_PORT (timeout ${KAFKA_TIMEOUT}s)" ;;
        redis) echo "PING on $HOST:$REDIS_PORT (timeout ${REDIS_TIMEOUT}s)" ;;
        hdfs) echo "a live DataNode, then a file written and read back through WebHDFS on $HOST:$HDFS_NAMENODE_HTTP_PORT (timeout ${HDFS_TIMEOUT}s)" ;;
    esac
}

ready_args() {
    case "$1" in
        cassandra) echo "--host $HOST --port $CASSANDRA_PORT --timeout $CASSANDRA_TIMEOUT" ;;
        kafka) echo "--bootstrap $HOST:$KAFKA_PORT --timeout $KAFKA_TIMEOUT" ;;
        redis) echo "--host $HOST --port $REDIS_PORT --timeout $REDIS_TIMEOUT" ;;
        hdfs) echo "--host $HOST --port $HDFS_NAMENODE_PORT --http-port $HDFS_NAMENODE_HTTP_PORT --timeout $HDFS_TIMEOUT" ;;
    esac
}

write_env() {
    local jars=""
    if compgen -G "$LIB/spark/*.jar" >/dev/null; then
        jars="$(ls "$LIB"/spark/*.jar | paste -sd, -)"
    fi
    local hdfs=""   # only once HDFS is asked for (or running): its port as launched
    if selected hdfs || svc_pid hdfs-namenode >/dev/null; then
        hdfs="hdfs://$HOST:$(cat "$RUN/hdfs-namenode.port" 2>/dev/null || echo "$HDFS_NAMENODE_PORT")"
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
    [[ -z "$hdfs" ]] || echo "HDFS_URL=$hdfs" >>"$STACK_DIR/stack.env.tmp"
    mv "$STACK_DIR/stack.env.tmp" "$STACK_DIR/stack.env"
}

# ---------------------------------------------------------------- commands
# start_one SVC T0 [PROC...]: (runs as a background job) launch the named processes of SVC (none: all are reused),
# then block until ready.py reports it ready (failing at once if one of its processes dies); ready.py output goes
# to run/SVC.ready
start_one() {
    local svc="$1" t0="$2"; shift 2
    local proc pids=() names=""
    if [[ $# -gt 0 ]]; then
        [[ "$svc" != redis ]] || ensure_redis_installed
        [[ "$*" == "$svc" ]] || names=" $*"
        say "$svc: launching$names (log $(for proc in "$@"; do logfile "$proc"; done | paste -sd' ' -))"
        "launch_$svc" "$@" || { echo "launch failed" >"$RUN/$svc.ready"; return 1; }
        for proc in "$@"; do svc_port "$proc" >"$RUN/$proc.port"; done
    fi
    for proc in $(svc_procs "$svc"); do pids+=(--pid "$(tr -dc '0-9' <"$(pidfile "$proc")")"); done
    say "waiting for $svc: $(describe_wait "$svc")"
    # shellcheck disable=SC2046
    "$PY" "$HERE/ready.py" "$svc" $(ready_args "$svc") "${pids[@]}" --since "$t0" \
        ${READY_VERBOSE:+--verbose} >"$RUN/$svc.ready" 2>&1
}

cmd_start() {
    parse_services start "$@"
    local t0; t0="$(now)"
    mkdir -p "$CONF" "$DATA" "$LOGS" "$RUN"
    ensure_secrets
    ensure_python
    ensure_jars

    # 1. decide per process: reuse a running server, or launch (after checking its ports are free)
    local svc proc pid port ok failed=()
    declare -A launch=() job=()
    for svc in "${LAUNCH_ORDER[@]}"; do
        selected "$svc" || continue
        ok=1; launch[$svc]=""
        for proc in $(svc_procs "$svc"); do
            port="$(svc_port "$proc")"
            if pid="$(svc_pid "$proc")"; then
                local was; was="$(cat "$RUN/$proc.port" 2>/dev/null || echo "$port")"
                if [[ "$was" != "$port" ]]; then
                    err "$proc: already running (pid $pid) on port $was, not $port; stop it first"; ok=0; continue
                fi
                if port_open "$port"; then say "$proc: already running (pid $pid, port $port)"
                else say "$proc: process $pid is up but port $port not answering yet (still starting?)"; fi
            else
                rm -f "$(pidfile "$proc")" "$RUN/$proc.port" "$RUN/$svc.ready"
                check_ports_free "$proc" || { ok=0; continue; }
                launch[$svc]+=" $proc"
            fi
        done
        [[ $ok -eq 1 ]] || { failed+=("$svc"); unset "launch[$svc]"; }
    done
    write_env

    # 2. launch + wait, all services concurrently (Cassandra first: it is the slowest to boot)
    for svc in "${LAUNCH_ORDER[@]}"; do
        [[ -n "${launch[$svc]+set}" ]] || continue
        # shellcheck disable=SC2086
        start_one "$svc" "$t0" ${launch[$svc]} &
        job[$svc]=$!
    done
    for svc in "${LAUNCH_ORDER[@]}"; do
        [[ -n "${job[$svc]:-}" ]] || continue
        if wait "${job[$svc]}"; then
            say "$(tail -n 1 "$RUN/$svc.ready")"
        else
            err "$svc did not become ready: $(tail -n 1 "$RUN/$svc.ready" 2>/dev/null)"
            for proc in $(svc_procs "$svc"); do
                err "last 40 lines of $(logfile "$proc"):"
                tail -n 40 "$(logfile "$proc")" >&2 2>/dev/null || true
            done
            failed+=("$svc")
        fi
    done
    if [[ ${#failed[@]} -gt 0 ]]; then
        err "start failed for: ${failed[*]} (after $(since "$t0")s)"; return 1
    fi
    say "stack ready after $(since "$t0")s: ${SERVICES[*]} (settings in $STACK_DIR/stack.env)"
}

cmd_stop() {
    parse_services stop "$@"
    local svc pid procs
    mapfile -t procs < <(procs_of "${SERVICES[@]}")
    declare -A spid=()
    # SIGTERM everything first so the servers shut down in parallel
    for svc in "${procs[@]}"; do
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
    for svc in "${procs[@]}"; do
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
    parse_services status "$@"
    local svc pid state port down=0
    printf '%-13s %-9s %-8s %-6s %-40s %s\n' SERVICE STATE PID PORT DATA LOG
    for svc in $(procs_of "${SERVICES[@]}"); do
        port="$(cat "$RUN/$svc.port" 2>/dev/null || svc_port "$svc")"
        if pid="$(svc_pid "$svc")"; then
            if port_open "$port"; then state=running; else state=starting; down=1; fi
        else
            pid=-; down=1
            if [[ -f "$(pidfile "$svc")" ]]; then state="stale-pid"; else state=stopped; fi
        fi
        printf '%-13s %-9s %-8s %-6s %-40s %s\n' "$svc" "$state" "$pid" "$port" "$DATA/$svc" "$(logfile "$svc")"
    done
    return $(( down ? 3 : 0 ))
}

cmd_logs() {
    local follow=()
    if [[ "${1:-}" == -f ]]; then follow=(-F); shift; fi
    parse_services logs "$@"
    local files=() svc
    for svc in $(procs_of "${SERVICES[@]}"); do [[ -f "$(logfile "$svc")" ]] && files+=("$(logfile "$svc")"); done
    [[ ${#files[@]} -gt 0 ]] || die "no logs yet in $LOGS"
    tail -n "${LOG_LINES:-60}" "${follow[@]}" "${files[@]}"
}

cmd_reset() {
    cmd_stop "$@"
    local svc
    for svc in $(procs_of "${SERVICES[@]}"); do
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
