#!/usr/bin/env bash
# Submit one stage of the pipeline with spark-submit, from the artifacts infra/build.sh made.
#
#   infra/submit.sh [options] STAGE[,STAGE...] [job flags...]
#
# Several stages, comma-separated, run in that order in one application (named
# cdp-ingest+silver-<env>): each application starts its driver and executors cold, which on
# small data costs more than a stage's own work.
#
# Options (each also settable by the environment variable in brackets):
#   --master URL          spark master: yarn, k8s://https://..., spark://host:7077, local[2]
#                         [CDP_SPARK_MASTER]; required
#   --deploy-mode MODE    client (driver here, the default) or cluster [CDP_DEPLOY_MODE]
#   --dist DIR            the artifacts directory (default: <repo>/dist) [CDP_DIST]
#   --env ENV             configuration environment: conf/<ENV>.yaml (default: cluster) [CDP_ENV]
#   --no-packages         do not pass --packages (the Delta and GraphFrames jars are already
#                         on the cluster's classpath, or there is no Maven access)
#   --no-env-archive      do not ship the packed Python environment (nodes have the deps)
#   --spark-conf K=V      any extra spark-submit --conf (repeatable)
#   --dry-run             print the spark-submit command instead of running it
# Job flags go to the stage (see `cdp run --help`): --as-of DATE, --conf FILE (a YAML layered
# over conf/<ENV>.yaml), --set KEY=VALUE, --data-root URI.
#
# MLFLOW_TRACKING_URI (and MLFLOW_REGISTRY_URI, CDP_DATA_ROOT, CDP_LANDING_ROOT,
# CDP_STORAGE_BACKEND, CDP_LOG_LEVEL), when set here, reach the driver and the executors in
# either deploy mode.
#
# The shipped conf declares no sources (they are the demo's): run a site's with CDP_CONF_DIR
# pointing at its conf/ (`cdp init`; client mode), or the demo's with the demo profile,
# --conf ./cdp-conf/demo.yaml in cluster mode or --conf "$DIST/conf/demo.yaml" in client mode.
#
# Examples:
#   infra/submit.sh --master yarn ingest --conf dist/conf/demo.yaml
#   MLFLOW_TRACKING_URI=http://mlflow:5000 infra/submit.sh --master yarn --deploy-mode cluster \
#       train --as-of 2025-06-30
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIST="${CDP_DIST:-$ROOT/dist}"
MASTER="${CDP_SPARK_MASTER:-}"
DEPLOY_MODE="${CDP_DEPLOY_MODE:-client}"
ENV_NAME="${CDP_ENV:-cluster}"
PACKAGES=1
ENV_ARCHIVE=1
DRY_RUN=0
EXTRA=()
FORWARDED_VARS=(MLFLOW_TRACKING_URI MLFLOW_REGISTRY_URI CDP_DATA_ROOT CDP_LANDING_ROOT
  CDP_STORAGE_BACKEND CDP_LOG_LEVEL)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "submit.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --master) MASTER="${2:?--master needs a value}"; shift 2 ;;
    --deploy-mode) DEPLOY_MODE="${2:?--deploy-mode needs a value}"; shift 2 ;;
    --dist) DIST="${2:?--dist needs a value}"; shift 2 ;;
    --env) ENV_NAME="${2:?--env needs a value}"; shift 2 ;;
    --no-packages) PACKAGES=0; shift ;;
    --no-env-archive) ENV_ARCHIVE=0; shift ;;
    --spark-conf) EXTRA+=(--conf "${2:?--spark-conf needs KEY=VALUE}"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || die "no stage given (see --help)"
STAGE="$1"
shift
[ -n "$MASTER" ] || die "no master: pass --master URL or set CDP_SPARK_MASTER"
case "$DEPLOY_MODE" in client | cluster) ;; *) die "--deploy-mode must be client or cluster" ;; esac

DIST="$(cd "$DIST" 2>/dev/null && pwd)" || die "no artifacts directory; run infra/build.sh first"
[ -f "$DIST/MANIFEST.json" ] || die "$DIST has no MANIFEST.json; run infra/build.sh first"
# The manifest names the files of this build (one version per dist directory).
manifest() { sed -n "s/.*\"$1\": \"\\([^\"]*\\)\".*/\\1/p" "$DIST/MANIFEST.json" | head -n 1; }
ZIP="$DIST/$(manifest zip)"
JOB="$DIST/$(manifest job)"
CONF_ZIP="$DIST/$(manifest conf_zip)"
ENV_PACK_NAME="$(manifest env)"
[ -f "$ZIP" ] && [ -f "$JOB" ] || die "$DIST is incomplete; run infra/build.sh again"

SPARK_SUBMIT="spark-submit"
if [ -n "${SPARK_HOME:-}" ]; then SPARK_SUBMIT="$SPARK_HOME/bin/spark-submit"; fi

ARGS=(--master "$MASTER" --deploy-mode "$DEPLOY_MODE" --name "cdp-${STAGE//,/+}-$ENV_NAME")
if [ "$PACKAGES" = 1 ]; then
  ARGS+=(--packages "$(tr -d '[:space:]' <"$DIST/packages.txt")")
fi
ARGS+=(--py-files "$ZIP")
# Splink's similarity functions for identity matching (shipped in dist/, no Maven).
SPLINK_JAR="$(manifest splink_jar)"
if [ -n "$SPLINK_JAR" ] && [ -f "$DIST/$SPLINK_JAR" ]; then
  ARGS+=(--jars "$DIST/$SPLINK_JAR")
fi
# Stage logs and timestamps in UTC on every JVM, as the embedded session does.
ARGS+=(--conf "spark.driver.extraJavaOptions=-Duser.timezone=UTC")
ARGS+=(--conf "spark.executor.extraJavaOptions=-Duser.timezone=UTC")
ARGS+=(--conf "spark.sql.session.timeZone=UTC")
# No Python call site recorded per Column call (eight py4j round trips each; see
# lib/cdp/session.py). Static, so it is set here; --spark-conf ...=true brings it back.
ARGS+=(--conf "spark.python.sql.dataFrameDebugging.enabled=false")

ARCHIVES=()
if [ "$ENV_ARCHIVE" = 1 ] && [ -n "$ENV_PACK_NAME" ] && [ -f "$DIST/$ENV_PACK_NAME" ]; then
  ARCHIVES+=("$DIST/$ENV_PACK_NAME#environment")
  # Relative to each container's (or, in local mode, each worker's) working directory,
  # where --archives unpacks.
  ARGS+=(--conf "spark.pyspark.python=./environment/bin/python")
  if [ "$DEPLOY_MODE" = cluster ]; then
    ARGS+=(--conf "spark.pyspark.driver.python=./environment/bin/python")
  elif [ -z "${PYSPARK_DRIVER_PYTHON:-}" ]; then
    # Client mode: the driver runs here, from the same environment unpacked once.
    env_base="${ENV_PACK_NAME%.zip}"
    env_base="${env_base%.tar.gz}"
    DRIVER_ENV="$DIST/.driver-env/${env_base%.tar}"
    if [ ! -f "$DRIVER_ENV/.cdp-unpacked" ]; then
      rm -rf "$DRIVER_ENV"
      mkdir -p "$DRIVER_ENV"
      case "$ENV_PACK_NAME" in
        *.zip) (cd "$DRIVER_ENV" && python3 -m zipfile -e "$DIST/$ENV_PACK_NAME" .) ;;
        *) tar -xf "$DIST/$ENV_PACK_NAME" -C "$DRIVER_ENV" ;;
      esac
      touch "$DRIVER_ENV/.cdp-unpacked"
    fi
    ARGS+=(--conf "spark.pyspark.driver.python=$DRIVER_ENV/bin/python")
  fi
fi

if [ "$DEPLOY_MODE" = cluster ]; then
  # The driver runs on the cluster: ship the configuration and point the driver at it.
  ARCHIVES+=("$CONF_ZIP#cdp-conf")
  for key in spark.yarn.appMasterEnv spark.kubernetes.driverEnv; do
    ARGS+=(--conf "$key.CDP_CONF_DIR=./cdp-conf")
  done
else
  export CDP_CONF_DIR="${CDP_CONF_DIR:-$DIST/conf}"
fi

for var in "${FORWARDED_VARS[@]}"; do
  value="${!var:-}"
  [ -n "$value" ] || continue
  ARGS+=(--conf "spark.executorEnv.$var=$value")
  if [ "$DEPLOY_MODE" = cluster ]; then
    ARGS+=(--conf "spark.yarn.appMasterEnv.$var=$value")
    ARGS+=(--conf "spark.kubernetes.driverEnv.$var=$value")
  fi
done

if [ ${#ARCHIVES[@]} -gt 0 ]; then
  ARGS+=(--archives "$(IFS=,; echo "${ARCHIVES[*]}")")
fi
if [ ${#EXTRA[@]} -gt 0 ]; then ARGS+=("${EXTRA[@]}"); fi

CMD=("$SPARK_SUBMIT" "${ARGS[@]}" "$JOB" "$STAGE" --env "$ENV_NAME" "$@")
if [ "$DRY_RUN" = 1 ]; then
  printf '%q ' "${CMD[@]}"
  echo
  exit 0
fi
exec "${CMD[@]}"
