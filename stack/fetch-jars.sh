#!/usr/bin/env bash
# Fetch the jars the local stack needs from Maven Central into project-local (git-ignored) folders:
#   $STACK_DIR/lib/cassandra  org.apache.cassandra:cassandra-all 5.0.x + runtime deps (newest of $CASSANDRA_VERSIONS that resolves)
#   $STACK_DIR/lib/kafka      org.apache.kafka:kafka_2.13:3.9.1 + slf4j-reload4j + reload4j (runtime deps)
#   $STACK_DIR/lib/spark      the jars PySpark 3.5.9 needs in spark.jars, exactly those listed in poms/spark.xml (no
#                             transitive extras): spark-sql-kafka + token provider (newest of $SPARK_KAFKA_VERSIONS),
#                             kafka-clients 3.4.1, commons-pool2 2.11.1, Spark Cassandra Connector 3.5.1 + its driver deps
#   $STACK_DIR/lib/hdfs       only when named (stack.sh start hdfs asks for it): Hadoop 3.3.4 NameNode + DataNode
#                             (hadoop-hdfs, hadoop-common, hadoop-hdfs-client + the runtime deps poms/hdfs.xml keeps),
#                             the version of the Hadoop client the pyspark 3.5.9 wheel bundles
#
# Usage: stack/fetch-jars.sh [cassandra|kafka|spark|hdfs ...]  (no argument = cassandra kafka spark: hdfs only by name)
# Env:   STACK_DIR (default <repo>/.stack), CASSANDRA_VERSIONS (default "5.0.8 5.0.6 5.0.4"),
#        SPARK_KAFKA_VERSIONS (default "3.5.9 3.5.8 3.5.7"), MVN (default mvn)
#
# Idempotent: each folder holds a .complete marker with the sha256 of the pom it was built from; a folder whose
# marker matches is skipped. Folders are filled in a temp dir and renamed into place, so an interrupted run never
# leaves a folder that looks complete.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
STACK_DIR="${STACK_DIR:-$REPO/.stack}"
LIB_DIR="$STACK_DIR/lib"
POMS="$HERE/poms"
MVN="${MVN:-mvn}"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
CASSANDRA_VERSIONS="${CASSANDRA_VERSIONS:-5.0.8 5.0.6 5.0.4}"
# spark-sql-kafka must match pyspark (3.5.9); the Maven Central this machine reaches stops at 3.5.7 -> fallback.
SPARK_KAFKA_VERSIONS="${SPARK_KAFKA_VERSIONS:-3.5.9 3.5.8 3.5.7}"

log() { printf '[fetch-jars] %s\n' "$*" >&2; }
# FETCH_JARS_QUIET=1 (set by stack.sh): say nothing when a folder is already complete
uptodate() { [[ "${FETCH_JARS_QUIET:-0}" == 1 ]] || log "$*"; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$LIB_DIR"

sha() { sha256sum | cut -d' ' -f1; }

# marker_ok DIR HASH -> 0 if DIR/.complete records HASH
marker_ok() { [[ -f "$1/.complete" ]] && grep -qx "pom_sha256=$2" "$1/.complete"; }

# copy_deps POMFILE OUTDIR EXTRA_ARGS... -> runs maven-dependency-plugin copy-dependencies
copy_deps() {
    local pom="$1" out="$2"; shift 2
    command -v "$MVN" >/dev/null 2>&1 || die "maven ($MVN) not found"
    # -U: re-check artifacts an earlier run cached as "not found" (matters for the version fallbacks)
    "$MVN" -B -q -U -f "$pom" "$DEP_PLUGIN:copy-dependencies" \
        -DoutputDirectory="$out" -DincludeScope=runtime "$@"
}

# install_dir NAME TMPDIR HASH [key=value...] -> writes marker, swaps TMPDIR into $LIB_DIR/NAME
install_dir() {
    local name="$1" tmp="$2" hash="$3"; shift 3
    {
        echo "pom_sha256=$hash"
        local kv; for kv in "$@"; do echo "$kv"; done
        echo "jars=$(find "$tmp" -maxdepth 1 -name '*.jar' | wc -l)"
        echo "fetched_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } >"$tmp/.complete"
    rm -rf "$LIB_DIR/$name.old"
    [[ -d "$LIB_DIR/$name" ]] && mv "$LIB_DIR/$name" "$LIB_DIR/$name.old"
    mv "$tmp" "$LIB_DIR/$name"
    rm -rf "$LIB_DIR/$name.old"
}

# fetch_versioned NAME PLACEHOLDER "CANDIDATES" CHECK_JAR_PREFIX [extra copy-dependencies args...]
# Fills PLACEHOLDER in poms/NAME.xml with each candidate version in turn; the first one whose
# CHECK_JAR_PREFIX-<version>.jar gets copied wins. The marker hash covers the template + candidate list; the
# resolved version is recorded in the marker (version=...).
fetch_versioned() {
    local name="$1" placeholder="$2" candidates="$3" check="$4"; shift 4
    local dest="$LIB_DIR/$name"
    local hash; hash="$( { cat "$POMS/$name.xml"; echo "candidates=$candidates"; echo "args=$*"; } | sha)"
    if marker_ok "$dest" "$hash"; then
        uptodate "$name: up to date ($(grep '^version=' "$dest/.complete" | cut -d= -f2))"; return 0
    fi
    local v work
    for v in $candidates; do
        log "$name: trying version $v"
        work="$(mktemp -d "$STACK_DIR/tmp.$name.XXXXXX")"
        sed "s/$placeholder/$v/g" "$POMS/$name.xml" >"$work/pom.xml"
        if copy_deps "$work/pom.xml" "$work/lib" "$@" >"$work/mvn.log" 2>&1 && [[ -f "$work/lib/$check-$v.jar" ]]; then
            install_dir "$name" "$work/lib" "$hash" "version=$v"
            rm -rf "$work"
            log "$name: $v -> $dest ($(find "$dest" -maxdepth 1 -name '*.jar' | wc -l) jars)"; return 0
        fi
        log "$name: $v did not resolve: $(grep -m1 -oE '(Could not find artifact|could not be resolved:) [^ ]+' "$work/mvn.log" | head -n 1 || true)"
        rm -rf "$work"
    done
    die "$name: none of [$candidates] resolved"
}

# fetch_simple NAME [extra copy-dependencies args...]
fetch_simple() {
    local name="$1"; shift
    local dest="$LIB_DIR/$name" pom="$POMS/$name.xml"
    local hash; hash="$( { cat "$pom"; echo "args=$*"; } | sha)"
    if marker_ok "$dest" "$hash"; then uptodate "$name: up to date"; return 0; fi
    log "$name: resolving $pom"
    local work; work="$(mktemp -d "$STACK_DIR/tmp.$name.XXXXXX")"
    if ! copy_deps "$pom" "$work/lib" "$@" >"$work/mvn.log" 2>&1; then
        tail -n 30 "$work/mvn.log" >&2; rm -rf "$work"; die "$name: maven failed"
    fi
    install_dir "$name" "$work/lib" "$hash"
    rm -rf "$work"
    log "$name: -> $dest ($(find "$dest" -maxdepth 1 -name '*.jar' | wc -l) jars)"
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(cassandra kafka spark)
for t in "${targets[@]}"; do
    case "$t" in
        cassandra) fetch_versioned cassandra @CASSANDRA_VERSION@ "$CASSANDRA_VERSIONS" cassandra-all ;;
        kafka) fetch_simple kafka ;;
        spark) fetch_versioned spark @SPARK_KAFKA_VERSION@ "$SPARK_KAFKA_VERSIONS" spark-sql-kafka-0-10_2.12 \
                   -DexcludeTransitive=true ;;
        hdfs) fetch_simple hdfs ;;
        *) die "unknown target '$t' (cassandra|kafka|spark|hdfs)" ;;
    esac
done
