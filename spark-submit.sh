#!/usr/bin/env bash
# ./spark-submit.sh <stream|sync|backfill|explain> [job options] [spark-submit options]
# ./spark-submit.sh --help           the modes and every setting;  <mode> --help  a mode's options
#
# Wraps Spark's spark-submit: adds the connector and Kafka jars and the packaged job, and passes
# every spark-submit option straight through (--master, --deploy-mode, --conf, --properties-file,
# --driver-memory, --executor-memory, --executor-cores, --num-executors, --queue, --jars, ...);
# spark-defaults.conf is honoured: nothing here sets a key the operator set there or on the
# command line. Everything else is the job's (--config, --env, --set, the mode's options).
#
# Runs from a checkout (after ./dev.sh setup) or from a release laid out by ./dev.sh release DIR
# (venv/, jars/, lib/enrolment_reconciliation.zip, conf/, jobs/, state/ beside this script's
# folder). In client mode (the default) the driver runs here; for --deploy-mode cluster see the
# README ("On a cluster").
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -x "$HERE/../venv/bin/python" ]; then    # a release: bin/spark-submit.sh
  ROOT="$(cd "$HERE/.." && pwd)"
  PY="${ER_PYTHON:-$ROOT/venv/bin/python}"
  jars_dir="${ER_SPARK_JARS_DIR:-$ROOT/jars}"
  zip_path="$ROOT/lib/enrolment_reconciliation.zip"
else                                          # a checkout
  ROOT="$HERE"
  PY="${ER_PYTHON:-$ROOT/.venv/bin/python}"
  jars_dir="${ER_SPARK_JARS_DIR:-${STACK_DIR:-$ROOT/.stack}/lib/spark}"
  zip_path="$ROOT/build/enrolment_reconciliation.zip"
fi
SPARK_SUBMIT="${SPARK_SUBMIT:-$(dirname "$PY")/spark-submit}"
job=("$PY" -m enrolment_reconciliation)
[ -d "$ROOT/lib/enrolment_reconciliation" ] && export PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}"

case "${1:-}" in
  ""|-*)  # --help and friends need no Spark
    if [ $# -ge 1 ]; then exec "${job[@]}" "$@"; fi
    "${job[@]}" --help >&2
    exit 2 ;;
esac
mode="$1"; shift

# spark-submit's own options (SparkSubmitArguments): they go to spark-submit, the rest to the job
spark_opts=() job_args=() user_jars="" user_py_files=""
while [ $# -gt 0 ]; do
  case "$1" in
    --jars) user_jars="$2"; shift 2 ;;
    --jars=*) user_jars="${1#*=}"; shift ;;
    --py-files) user_py_files="$2"; shift 2 ;;
    --py-files=*) user_py_files="${1#*=}"; shift ;;
    --master|--deploy-mode|--name|--packages|--exclude-packages|--repositories|--files|--archives|\
    --conf|-c|--properties-file|--driver-memory|--driver-java-options|--driver-library-path|\
    --driver-class-path|--driver-cores|--executor-memory|--executor-cores|--num-executors|\
    --total-executor-cores|--queue|--proxy-user|--principal|--keytab)
      spark_opts+=("$1" "$2"); shift 2 ;;
    --master=*|--deploy-mode=*|--name=*|--packages=*|--exclude-packages=*|--repositories=*|\
    --files=*|--archives=*|--conf=*|--properties-file=*|--driver-memory=*|--driver-java-options=*|\
    --driver-library-path=*|--driver-class-path=*|--driver-cores=*|--executor-memory=*|\
    --executor-cores=*|--num-executors=*|--total-executor-cores=*|--queue=*|--proxy-user=*|\
    --principal=*|--keytab=*)
      spark_opts+=("$1"); shift ;;
    --supervise|--verbose|-v) spark_opts+=("$1"); shift ;;
    *) job_args+=("$1"); shift ;;
  esac
done
# a mode's --help needs no Spark either
if printf '%s\n' "${job_args[@]}" | grep -qxE -- '-h|--help'; then
  exec "${job[@]}" "$mode" "${job_args[@]}"
fi
if [ -n "${ER_SPARK_MASTER:-}" ] && ! printf '%s\n' "${spark_opts[@]}" | grep -q -- '^--master'; then
  spark_opts+=(--master "$ER_SPARK_MASTER")
fi

export ER_CONFIG="${ER_CONFIG:-$ROOT/conf/enrolment-reconciliation.conf}"
[ -f "$ER_CONFIG" ] || unset ER_CONFIG
export ER_STATE_DIR="${ER_STATE_DIR:-$ROOT/state}"  # state.location when the config sets none

# sync --via-stream starts no Spark: it asks the running stream, so it answers in seconds
if [ "$mode" = sync ] && printf '%s\n' "${job_args[@]}" | grep -qx -- --via-stream; then
  exec "${job[@]}" sync "${job_args[@]}"
fi

if [ -z "${ER_SPARK_JARS:-}" ]; then
  if [ -z "$(ls "$jars_dir"/*.jar 2>/dev/null)" ]; then
    [ -f "$ROOT/stack/fetch-jars.sh" ] || { echo "no jars in $jars_dir" >&2; exit 2; }
    bash "$ROOT/stack/fetch-jars.sh" >&2
  fi
  ER_SPARK_JARS="$(ls "$jars_dir"/*.jar | paste -sd, -)"
fi

# A checkout packages lib/ for the executors on every run (cheap, never stale); a release
# carries the zip it was built with.
if [ -d "$ROOT/lib/enrolment_reconciliation" ]; then
  mkdir -p "$(dirname "$zip_path")"
  (cd "$ROOT/lib" && rm -f "$zip_path" && "$PY" - "$zip_path" <<'PYZIP'
import sys, zipfile, pathlib
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for p in sorted(pathlib.Path("enrolment_reconciliation").rglob("*.py")):
        z.write(p)
PYZIP
  )
fi

# Whether the operator set a Spark key: on the command line, in --properties-file, or (without
# one) in spark-defaults.conf. A pattern may match the key or the value (e.g. a GC flag).
properties_file() {
  local i
  for ((i = 0; i < ${#spark_opts[@]}; i++)); do
    case "${spark_opts[$i]}" in
      --properties-file) echo "${spark_opts[$((i + 1))]}"; return ;;
      --properties-file=*) echo "${spark_opts[$i]#*=}"; return ;;
    esac
  done
  local home="${SPARK_HOME:-}"
  if [ -z "${SPARK_CONF_DIR:-}" ] && [ -z "$home" ]; then  # the pyspark package is Spark's home
    home="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
  fi
  echo "${SPARK_CONF_DIR:-$home/conf}/spark-defaults.conf"
}
operator_sets() {
  printf '%s\n' "${spark_opts[@]}" "${SPARK_SUBMIT_OPTS:-}" "${JAVA_TOOL_OPTIONS:-}" | grep -Eq -- "$1" && return 0
  local file; file="$(properties_file)"
  [ -f "$file" ] && grep -Ev '^\s*#' "$file" | grep -Eq -- "$1"
}

# Logs: every line on standard error (the driver's and Spark's), one JSON object each unless a
# person watches (a terminal); a run's result alone on standard output.
if [ -t 2 ]; then log_format=text; else log_format=json; fi
export ER_LOG_FORMAT="${ER_LOG_FORMAT:-$log_format}"

export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PY}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$PY}"
submit=("$SPARK_SUBMIT")
operator_sets '^--name' || submit+=(--name "enrolment-reconciliation-$mode")
submit+=(--jars "$ER_SPARK_JARS${user_jars:+,$user_jars}" --py-files "$zip_path${user_py_files:+,$user_py_files}")
# Spark's console progress bar only when a person watches (stderr is a terminal)
if [ -t 2 ] && ! operator_sets 'spark\.ui\.showConsoleProgress'; then
  submit+=(--conf spark.ui.showConsoleProgress=true)
fi

# The backfill is a batch job bound by the machine's CPU: a throughput collector spends less of
# it than G1 (Java's default), whose concurrent marking runs beside the work (docs/benchmarks.md).
# Applied to the driver and the executors unless the operator chose a collector or default JVM
# options (two collectors on one command line stop the JVM); ER_BACKFILL_JAVA_OPTIONS= turns it off.
backfill_java="${ER_BACKFILL_JAVA_OPTIONS--XX:+UseParallelGC}"
driver_java="" executor_java=""
if [ "$mode" = backfill ] && [ -n "$backfill_java" ] \
    && ! operator_sets '-XX:\+Use[A-Za-z0-9]+GC|defaultJavaOptions'; then
  driver_java="$backfill_java" executor_java="$backfill_java"
fi
# Spark's own lines as JSON too, unless the operator configured logging
log4j_json="$ROOT/conf/spark/log4j2-json.properties"
if [ "$ER_LOG_FORMAT" = json ] && [ -f "$log4j_json" ] \
    && ! operator_sets 'log4j2?\.configuration|defaultJavaOptions' \
    && [ ! -f "${SPARK_CONF_DIR:-/nonexistent}/log4j2.properties" ]; then
  driver_java="${driver_java:+$driver_java }-Dlog4j2.configurationFile=file:$log4j_json"
fi
[ -z "$driver_java" ] || submit+=(--conf "spark.driver.defaultJavaOptions=$driver_java")
[ -z "$executor_java" ] || submit+=(--conf "spark.executor.defaultJavaOptions=$executor_java")
submit+=("${spark_opts[@]}" "$ROOT/jobs/enrolment_reconciliation_job.py" "$mode" "${job_args[@]}")
# The result alone on standard output (for jq), everything else on standard error: Spark merges
# the Python driver's standard error into its standard output, so the driver writes its result
# to a file printed here once the run ends.
result="$(mktemp)"
trap 'rm -f "$result"' EXIT
set +e
ER_RESULT_FILE="$result" "${submit[@]}" 1>&2 &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT  # a supervisor's stop reaches the job
wait "$child"
code=$?
if [ "$code" -gt 128 ] && kill -0 "$child" 2>/dev/null; then wait "$child"; code=$?; fi
set -e
cat "$result"
exit "$code"
