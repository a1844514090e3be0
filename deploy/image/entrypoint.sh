#!/usr/bin/env bash
# The image's entry point (under tini, which passes signals on):
#   <stream|sync|backfill|explain> [options]  the job, through bin/spark-submit.sh
#   driver ARGS...                            a driver pod of Spark on Kubernetes
#   executor                                  an executor pod of Spark on Kubernetes
# Spark's Kubernetes scheduler starts its pods with `driver` and `executor` and describes them
# with environment variables (SPARK_DRIVER_BIND_ADDRESS; SPARK_DRIVER_URL, SPARK_EXECUTOR_ID,
# SPARK_EXECUTOR_CORES, SPARK_EXECUTOR_MEMORY, SPARK_APPLICATION_ID, SPARK_EXECUTOR_POD_IP,
# SPARK_EXECUTOR_POD_NAME, SPARK_RESOURCE_PROFILE_ID, SPARK_JAVA_OPT_<n>). Written to that
# protocol as Spark 3.5 documents it; not run against a Kubernetes cluster here (README,
# "On a cluster").
set -euo pipefail
ER_HOME="${ER_HOME:-/opt/enrolment-reconciliation}"
PY="$ER_HOME/venv/bin/python"

spark_home() {
  "$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))'
}

case "${1:-}" in
  driver)
    shift
    # the driver runs in this pod: client mode, bound to the pod's address
    exec "$ER_HOME/venv/bin/spark-submit" --deploy-mode client \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:?set by Spark}" \
      --jars "$(ls "$ER_HOME"/jars/*.jar | paste -sd, -)" "$@"
    ;;
  executor)
    shift
    home="${SPARK_HOME:-$(spark_home)}"
    java_opts=()
    while IFS='=' read -r _ value; do java_opts+=("$value"); done \
      < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4,4n)
    exec "${JAVA_HOME:-$ER_HOME/java}/bin/java" "${java_opts[@]}" \
      -Xms"${SPARK_EXECUTOR_MEMORY:?set by Spark}" -Xmx"$SPARK_EXECUTOR_MEMORY" \
      -cp "$home/conf:$home/jars/*:$ER_HOME/jars/*${SPARK_EXTRA_CLASSPATH:+:$SPARK_EXTRA_CLASSPATH}" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL:?set by Spark}" \
      --executor-id "${SPARK_EXECUTOR_ID:?set by Spark}" \
      --cores "${SPARK_EXECUTOR_CORES:?set by Spark}" \
      --app-id "${SPARK_APPLICATION_ID:?set by Spark}" \
      --hostname "${SPARK_EXECUTOR_POD_IP:?set by Spark}" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
      --podName "${SPARK_EXECUTOR_POD_NAME:-}"
    ;;
  *)
    exec "$ER_HOME/bin/spark-submit.sh" "$@"
    ;;
esac
