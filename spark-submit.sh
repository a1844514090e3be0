#!/usr/bin/env bash
# ./spark-submit.sh <stream|sync|backfill|explain> [--master URL] [--config FILE] [--env NAME] [--set k=v]...
#                   [mode options]      (./spark-submit.sh <mode> --help lists them)
# Wraps Spark's spark-submit with the connector and Kafka jars, the packaged library and the
# config. The library is shipped to executors as a zip (--py-files); executors need the Python
# dependencies of pyproject.toml installed (see README, "Beyond one machine").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STACK_DIR="${STACK_DIR:-$ROOT/.stack}"
PY="${ER_PYTHON:-$ROOT/.venv/bin/python}"
SPARK_SUBMIT="${SPARK_SUBMIT:-$(dirname "$PY")/spark-submit}"

if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: $0 <stream|sync|backfill|explain> [--master URL] [options]  (see --help of a mode)" >&2
  exit 2
fi

master="${ER_SPARK_MASTER:-local[*]}"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --master) master="$2"; shift 2 ;;
    --master=*) master="${1#--master=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

export ER_CONFIG="${ER_CONFIG:-$ROOT/conf/enrolment-reconciliation.conf}"
# sync --via-stream starts no Spark: it asks the running stream, so it answers in seconds
if [ "${args[0]}" = sync ] && printf '%s\n' "${args[@]}" | grep -qx -- --via-stream; then
  PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" \
    "$ROOT/jobs/enrolment_reconciliation_job.py" "${args[@]}"
fi

jars_dir="${ER_SPARK_JARS_DIR:-$STACK_DIR/lib/spark}"
if [ -z "${ER_SPARK_JARS:-}" ]; then
  [ -n "$(ls "$jars_dir"/*.jar 2>/dev/null)" ] || bash "$ROOT/stack/fetch-jars.sh" >&2
  ER_SPARK_JARS="$(ls "$jars_dir"/*.jar | paste -sd, -)"
fi

# Package lib/ as a zip for the executors (rebuilt each run: cheap, never stale); lib/ holds the
# job alone.
mkdir -p "$ROOT/build"
zip_path="$ROOT/build/enrolment_reconciliation.zip"
(cd "$ROOT/lib" && rm -f "$zip_path" && "$PY" - "$zip_path" <<'PYZIP'
import sys, zipfile, pathlib
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for p in sorted(pathlib.Path("enrolment_reconciliation").rglob("*.py")):
        z.write(p)
PYZIP
)

# Spark's console progress bar only when a person watches (stderr is a terminal).
progress=false
[ -t 2 ] && progress=true
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PY}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$PY}"
submit=(
  "$SPARK_SUBMIT"
  --master "$master"
  --name "enrolment-reconciliation-${args[0]}"
  --jars "$ER_SPARK_JARS"
  --py-files "$zip_path"
  --conf spark.sql.extensions=com.datastax.spark.connector.CassandraSparkExtensions
  --conf "spark.ui.showConsoleProgress=$progress"
)

# The backfill is a batch job bound by the machine's CPU: a throughput collector spends less of
# it than G1 (Java's default), whose concurrent marking runs beside the work (at `large`, cold,
# 1 GiB: GC threads 41 -> 24 CPU-seconds, the run 10% shorter; docs/benchmarks.md). Applied to
# the driver and the executors unless the operator chose a collector or default JVM options
# (two collectors on one command line stop the JVM); ER_BACKFILL_JAVA_OPTIONS= turns it off.
chosen_by_operator() {
  local defaults="${SPARK_CONF_DIR:-${SPARK_HOME:-/nonexistent}/conf}/spark-defaults.conf"
  printf '%s\n' "${args[@]}" "${SPARK_SUBMIT_OPTS:-}" "${JAVA_TOOL_OPTIONS:-}" \
    | grep -Eq -- '-XX:\+Use[A-Za-z0-9]+GC|defaultJavaOptions' && return 0
  [ -f "$defaults" ] && grep -Eq -- '-XX:\+Use[A-Za-z0-9]+GC|defaultJavaOptions' "$defaults"
}
backfill_java="${ER_BACKFILL_JAVA_OPTIONS--XX:+UseParallelGC}"
if [ "${args[0]}" = backfill ] && [ -n "$backfill_java" ] && ! chosen_by_operator; then
  submit+=(
    --conf "spark.driver.defaultJavaOptions=$backfill_java"
    --conf "spark.executor.defaultJavaOptions=$backfill_java"
  )
fi
submit+=("$ROOT/jobs/enrolment_reconciliation_job.py" "${args[@]}" --master "$master")
case "${args[0]}" in
  sync|explain)
    # The result alone on stdout (for jq), everything else on stderr: Spark merges the Python
    # driver's stderr into its stdout, so the driver writes its result to a file printed here.
    result="$(mktemp)"
    trap 'rm -f "$result"' EXIT
    set +e
    ER_RESULT_FILE="$result" "${submit[@]}" 1>&2
    code=$?
    set -e
    cat "$result"
    exit "$code"
    ;;
  *) exec "${submit[@]}" ;;
esac
