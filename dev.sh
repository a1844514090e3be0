#!/usr/bin/env bash
# The project's two commands (README):
#   ./dev.sh run    set up, start the local stack, load sample data, publish sample sync requests,
#                   run the streaming job (available-now) and print a summary
#   ./dev.sh test   set up, start the local stack, run the whole test suite
#   ./dev.sh backfill-demo   the same for the nightly backfill: sample data, a dry run, two runs
#   ./dev.sh bench [small|medium|large]   every benchmark instrument; figures into docs/benchmarks/
#   ./dev.sh profile [small|medium] [--runs N]   where a warm batch's time goes (cProfile, Spark jobs)
#   ./dev.sh bench-throttle   rows/s of each writer at write.max.per.second 500, 1000, 2000
#   ./dev.sh bench-sync       one learner: direct sync (start-up taken apart) vs sync --via-stream
#   ./dev.sh notebook         JupyterLab on the venv's kernel, pointed at the local stack (prints its URL)
#   ./dev.sh render-notebooks execute both notebooks on sample data, rendered into docs/notebooks/
#   ./dev.sh jars DIR         the Spark jars the job needs (connector, Kafka source), into DIR
#   ./dev.sh release DIR      a release an operator installs, laid out in DIR (see README, "Install")
#   ./dev.sh image [TAG]      the container image (podman, from Debian's archive), from a release
# and their parts: setup | stack-start | stack-stop | status | lint
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STACK_DIR="${STACK_DIR:-$ROOT/.stack}"

log() { printf '[dev] %s\n' "$*"; }

setup() {
  local stamp="$VENV/.installed" want
  want="$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -x "$PY" ]; then
    log "creating the virtualenv in .venv"
    python3 -m venv "$VENV"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing Python dependencies from pyproject.toml"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -e ".[test,notebook,charts]"
    echo "$want" > "$stamp"
  fi
  if ! command -v java >/dev/null; then
    log "installing a JDK (Debian openjdk-17-jre-headless)"
    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  fi
  if ! command -v promtool >/dev/null || ! command -v prometheus-pushgateway >/dev/null; then
    log "installing promtool and a Pushgateway (Debian prometheus, prometheus-pushgateway)"
    # their servers are not wanted here (:9090, :9091): policy-rc.d 101 keeps apt from starting them
    local policy=/usr/sbin/policy-rc.d own_policy="" rc=0
    [ -e "$policy" ] || { printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1; }
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends prometheus prometheus-pushgateway >/dev/null; } || rc=$?
    [ -z "$own_policy" ] || rm -f "$policy"
    [ ! -d /run/systemd/system ] || systemctl disable -q prometheus prometheus-pushgateway || true
    [ "$rc" = 0 ] || return "$rc"
  fi
  bash stack/fetch-jars.sh
}

start_stack() {
  bash stack/stack.sh start
  # the stack's generated credentials, as the job's environment variables (never printed)
  set -a
  # shellcheck disable=SC1091
  . "$STACK_DIR/secrets.env"
  set +a
}

stack_args() {
  # --set overrides for the job, from the ports the stack really uses
  # shellcheck disable=SC1091
  . "$STACK_DIR/stack.env"
  printf -- '--set\nlms-cassandra.host=%s\n--set\nlms-cassandra.port=%s\n--set\nkafka.broker-servers=%s\n--set\nredis.host=%s\n--set\nredis.port=%s\n' \
    "$CASSANDRA_HOST" "$CASSANDRA_PORT" "$KAFKA_BOOTSTRAP" "$REDIS_HOST" "$REDIS_PORT"
}

run() {
  setup
  start_stack
  mapfile -t overrides < <(stack_args)
  # a fresh env per run: its own topics and checkpoint, so the summary shows this run only
  local env_name="demo$(date +%s)"
  overrides+=(--env "$env_name" --set "stream.checkpoint.location=$STACK_DIR/checkpoints/$env_name")
  local conf="$ROOT/conf/local.conf" started
  log "loading sample data and publishing sample sync requests"
  "$PY" -m devkit.demo prepare --config "$conf" "${overrides[@]}"
  started="$(date +%s%3N)"
  log "running the streaming job: ./spark-submit.sh stream --trigger available-now"
  local spark_log="$STACK_DIR/logs/demo-spark.log"
  ER_LOG_FORMAT=json ./spark-submit.sh stream --trigger available-now --config "$conf" \
    "${overrides[@]}" 2>"$spark_log" || log "the stream failed: see $spark_log"
  "$PY" -m devkit.show_events "$spark_log" micro-batch query-failed giving-up
  "$PY" -m devkit.demo summary --config "$conf" "${overrides[@]}" --since "$started"
  log "the stack is still running: ./dev.sh stack-stop stops it (logs in $STACK_DIR/logs)"
}

backfill_demo() {
  setup
  start_stack
  mapfile -t overrides < <(stack_args)
  local env_name="demo$(date +%s)" conf="$ROOT/conf/local.conf" report="$STACK_DIR/reports/backfill-dry-run"
  overrides+=(--env "$env_name" --set "backfill.outbox.location=$STACK_DIR/checkpoints/$env_name/backfill-outbox")
  log "loading sample data (no sync requests: the backfill finds the stuck enrolments itself)"
  "$PY" -m devkit.load_sample --truncate --users 200 --courses 5 --config "$conf" "${overrides[@]}"
  # a sample this small fits one slice; four show how a large run works through its scope
  overrides+=(--set backfill.slices=4)
  log "dry run in 4 slices: ./spark-submit.sh backfill --dry-run $report --set backfill.slices=4"
  local spark_log="$STACK_DIR/logs/backfill-demo-spark.log"
  ER_LOG_FORMAT=json ./spark-submit.sh backfill --dry-run "$report" --config "$conf" \
    "${overrides[@]}" >/dev/null 2>"$spark_log" || log "the dry run failed: see $spark_log"
  "$PY" -m devkit.show_events "$spark_log" slice-plan phase slice
  log "report: $(ls "$report" | paste -sd' ')"
  for run in first second; do
    log "$run run: ./spark-submit.sh backfill --set backfill.slices=4"
    ER_LOG_FORMAT=json ./spark-submit.sh backfill --config "$conf" "${overrides[@]}" \
      2>"$spark_log" | "$PY" -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["summary"]))' \
      || log "the backfill failed: see $spark_log"
    "$PY" -m devkit.show_events "$spark_log" backfill-run slice
  done
}

bench() {
  setup
  start_stack
  log "benchmarks, preset ${1:-small}: figures into docs/benchmarks/"
  "$PY" -m benchmarks.run --preset "${1:-small}" "${@:2}"
}

profile() {
  setup
  start_stack
  log "profile of a warm batch, preset ${1:-small}: into docs/benchmarks/profile-${1:-small}.json"
  "$PY" -m benchmarks.profile_batch --preset "${1:-small}" "${@:2}"
}

notebook_env() {
  # the notebooks' settings: the stack's ports as --set overrides (JSON), credentials inherited
  mapfile -t overrides < <(stack_args | grep -v -- '^--set$')
  ER_NOTEBOOK_OVERRIDES="$("$PY" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${overrides[@]}")"
  export ER_NOTEBOOK_OVERRIDES
  # a notebook's session is built outside spark-submit: it finds the jars here
  export ER_SPARK_JARS_DIR="${ER_SPARK_JARS_DIR:-$STACK_DIR/lib/spark}"
}

notebook() {
  setup
  start_stack
  notebook_env
  local port="${ER_NOTEBOOK_PORT:-8888}" token
  token="$("$PY" -c 'import secrets; print(secrets.token_hex(24))')"
  log "JupyterLab on the venv's kernel, notebooks in notebooks/ (Ctrl-C stops it)"
  log "open: http://127.0.0.1:$port/lab?token=$token"
  local as_root=()
  [ "$(id -u)" != 0 ] || as_root=(--allow-root)  # containers and CI often run as root
  exec "$VENV/bin/jupyter" lab --no-browser --ip 127.0.0.1 --port "$port" "${as_root[@]}" \
    --ServerApp.port_retries=0 --IdentityProvider.token="$token" \
    --ServerApp.root_dir="$ROOT/notebooks" --ServerApp.log_level=WARN
}

jars() {
  [ -n "${1:-}" ] || { echo "usage: $0 jars DIR" >&2; exit 2; }
  bash stack/fetch-jars.sh spark
  mkdir -p "$1"
  cp "$STACK_DIR"/lib/spark/*.jar "$1"/
  log "$(ls "$1"/*.jar | wc -l) jars in $1"
}

release() {
  # A release runs with the repository out of reach: the job as a wheel installed into its own
  # venv, the jars, the wrapper, the entry point, the config and its templates, the deploy files.
  local dir="${1:-}"
  [ -n "$dir" ] || { echo "usage: $0 release DIR" >&2; exit 2; }
  setup
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [ ! -e "$dir/venv" ] || { echo "$dir already holds a release (venv/): use a new folder" >&2; exit 2; }
  log "laying out a release in $dir"
  mkdir -p "$dir"/{bin,lib,jobs,conf/templates,wheels,state}
  "$PY" -m pip wheel -q --no-deps -w "$dir/wheels" .
  jars "$dir/jars"
  (cd lib && "$PY" - "$dir/lib/enrolment_reconciliation.zip" <<'PYZIP'
import sys, zipfile, pathlib
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for p in sorted(pathlib.Path("enrolment_reconciliation").rglob("*.py")):
        z.write(p)
PYZIP
  )
  cp spark-submit.sh "$dir/bin/"
  cp jobs/enrolment_reconciliation_job.py "$dir/jobs/"
  cp conf/enrolment-reconciliation.conf "$dir/conf/"
  cp conf/templates/* "$dir/conf/templates/"
  cp -r conf/spark "$dir/conf/"
  cp -r deploy "$dir/deploy"
  printf 'enrolment-reconciliation %s\ncommit %s\nbuilt %s\n' \
    "$("$PY" -c 'import importlib.metadata as m; print(m.version("enrolment-reconciliation"))')" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$(date -u +%FT%TZ)" > "$dir/RELEASE"
  if [ -n "${RELEASE_NO_VENV:-}" ]; then return; fi  # an image installs the wheel itself
  log "installing the job and its dependencies into $dir/venv"
  "${RELEASE_PYTHON:-python3}" -m venv "$dir/venv"
  "$dir/venv/bin/python" -m pip install -q --upgrade pip
  "$dir/venv/bin/python" -m pip install -q "$(ls "$dir"/wheels/*.whl)[charts]"
  log "release ready: $dir/bin/spark-submit.sh <mode> --config $dir/conf/production.conf (from conf/templates/)"
}

image() {
  # podman and buildah from Debian's archive; runc where the host's cgroups need it
  if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null \
      || ! command -v runc >/dev/null; then
    log "installing podman, buildah, debootstrap and runc (Debian)"
    apt-get update -qq && apt-get install -y -qq podman buildah debootstrap runc >/dev/null
  fi
  local context="$STACK_DIR/image/release"
  rm -rf "$context"
  RELEASE_NO_VENV=1 release "$context"
  local started; started="$(date +%s)"
  deploy/image/build-image.sh "$context" "${1:-localhost/enrolment-reconciliation:dev}"
  log "image built in $(( $(date +%s) - started )) s (the base from Debian's archive, then the job)"
}

test_suite() {
  setup
  start_stack
  log "ruff and mypy"
  "$VENV/bin/ruff" check lib jobs tests benchmarks devkit notebooks
  "$VENV/bin/ruff" format --check lib jobs tests benchmarks devkit notebooks
  "$VENV/bin/mypy"
  log "pytest"
  "$VENV/bin/pytest" -q "$@"
}

case "${1:-}" in
  setup) setup ;;
  run) run ;;
  backfill-demo) backfill_demo ;;
  bench) shift; bench "$@" ;;
  bench-throttle) setup; start_stack; "$PY" -m benchmarks.throttle ;;
  bench-sync) setup; start_stack; "$PY" -m benchmarks.sync_latency ;;
  profile) shift; profile "$@" ;;
  notebook) notebook ;;
  render-notebooks) setup; start_stack; notebook_env; "$PY" -m devkit.render_notebooks ;;
  test) shift; test_suite "$@" ;;
  stack-start) bash stack/stack.sh start ;;
  stack-stop) bash stack/stack.sh stop ;;
  status) bash stack/stack.sh status ;;
  lint) "$VENV/bin/ruff" check lib jobs tests benchmarks devkit notebooks && "$VENV/bin/mypy" ;;
  jars) shift; jars "$@" ;;
  release) shift; release "$@" ;;
  image) shift; setup; image "$@" ;;
  *) echo "usage: $0 run|test|backfill-demo|bench|bench-throttle|bench-sync|profile|notebook|render-notebooks|jars|release|image|setup|stack-start|stack-stop|status|lint" >&2; exit 2 ;;
esac
