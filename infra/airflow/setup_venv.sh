#!/usr/bin/env bash
# Create, once, a virtual environment with Apache Airflow and its Spark provider, apart from
# the project's: Airflow pins many libraries the project also uses (SQLAlchemy, pydantic, ...).
# The DAG needs only `cdp.pipeline` (standard library) from the project, so the project itself
# is not installed there: put the built zip (or lib/) on PYTHONPATH, or `pip install --no-deps`
# the wheel into the scheduler's environment.
#
#   bash infra/airflow/setup_venv.sh        # prints the venv directory (created if needed)
#
# CDP_AIRFLOW_VENV overrides the location (default: ~/.cache/cdp-airflow-venv-<version>).
set -euo pipefail
AIRFLOW_VERSION="${CDP_AIRFLOW_VERSION:-3.3.2}"
SPARK_PROVIDER="${CDP_AIRFLOW_SPARK_PROVIDER:-apache-airflow-providers-apache-spark>=5,<6}"
VENV="${CDP_AIRFLOW_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cdp-airflow-venv-${AIRFLOW_VERSION}}"
PYTHON="${PYTHON:-python3}"
MARKER="$VENV/.cdp-ready"

if [ -f "$MARKER" ] && [ -x "$VENV/bin/python" ]; then
  echo "$VENV"
  exit 0
fi

# A half-built venv (interrupted install) is rebuilt from scratch: the marker is written last.
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
if command -v uv >/dev/null 2>&1; then
  # uv (the README's set-up installs it) resolves and installs Airflow's hundred-odd pins in a
  # fraction of pip's time; pip stays the fallback. Bytecode is compiled here, as pip does: uv
  # leaves it to the first import, which writes nothing where PYTHONDONTWRITEBYTECODE is set,
  # and then every process compiles Airflow's modules again.
  uv pip install -q --compile-bytecode --python "$VENV/bin/python" pip "apache-airflow==${AIRFLOW_VERSION}" "${SPARK_PROVIDER}" >&2
else
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q "apache-airflow==${AIRFLOW_VERSION}" "${SPARK_PROVIDER}" >&2
fi
"$VENV/bin/python" -c "import airflow, airflow.providers.apache.spark" >&2
"$VENV/bin/python" -m pip freeze >"$MARKER"
echo "$VENV"
