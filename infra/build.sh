#!/usr/bin/env bash
# Build every deployable artifact into DIR (default: dist/): the wheel, the zip for
# --py-files, the generic job entry point, the configuration, the --packages coordinates and
# the packed Python environment for executors. See infra/package.py for each file.
#
#   infra/build.sh [DIR] [--no-env]
#
# Run it with the project's Python (the .venv of the README) on a machine whose OS and Python
# match the cluster nodes': the packed environment holds compiled wheels (pyarrow, pandas ...)
# and points at this Python's installation path. PYTHON overrides the interpreter.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/dist"
ENV_FLAG=(--env)
for arg in "$@"; do
  case "$arg" in
    --no-env) ENV_FLAG=() ;;
    -h | --help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build.sh: unknown option $arg" >&2; exit 2 ;;
    *) OUT="$arg" ;;
  esac
done
PYTHON="${PYTHON:-python3}"
exec "$PYTHON" "$ROOT/infra/package.py" --out "$OUT" --wheel ${ENV_FLAG[@]+"${ENV_FLAG[@]}"}
