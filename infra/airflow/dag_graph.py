"""Load the DAG folder with Airflow's DagBag and print each DAG's graph as JSON.

    AIRFLOW_HOME=$(mktemp -d) PYTHONPATH=lib "$(bash infra/airflow/setup_venv.sh)/bin/python" \
        infra/airflow/dag_graph.py [infra/airflow/dags] [--out FILE]

Run with the Airflow venv's Python (infra/airflow/setup_venv.sh); no metadata database is
needed. Writes (to FILE, else stdout, where Airflow also logs) {"import_errors": {...}, "heavy_modules": [...], "dags": {dag_id: {...}}} where
each DAG lists its tasks (operator, application arguments, retries), its edges, its schedule,
and the ``--as-of`` argument rendered for a sample data interval.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Modules a DAG file must not import at parse time (the scheduler parses it every few seconds).
HEAVY = ("pyspark", "pandas", "pyarrow", "mlflow", "deltalake", "cdp.session", "cdp.config")


def _render(dag: Any, text: str) -> str:
    import pendulum

    end = pendulum.datetime(2025, 6, 30, tz="UTC")
    context = {"data_interval_start": end.subtract(days=1), "data_interval_end": end}
    return str(dag.get_template_env().from_string(text).render(**context))


def main() -> int:
    args = sys.argv[1:]
    out_file = None
    if "--out" in args:
        i = args.index("--out")
        out_file = Path(args[i + 1])
        del args[i : i + 2]
    folder = Path(args[0]) if args else Path(__file__).parent / "dags"
    before = set(sys.modules)
    try:  # Airflow 3
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag

    airflow_modules = set(sys.modules) - before
    # Airflow 3 drops include_examples (AIRFLOW__CORE__LOAD_EXAMPLES=False does it there).
    try:
        bag = DagBag(dag_folder=str(folder), include_examples=False)
    except TypeError:
        bag = DagBag(dag_folder=str(folder))
    loaded = set(sys.modules) - before - airflow_modules
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    dags: dict[str, Any] = {}
    for dag_id, dag in sorted(bag.dags.items()):
        tasks = {}
        for task in dag.tasks:
            args = [str(a) for a in getattr(task, "application_args", None) or []]
            rendered = None
            if "--as-of" in args:
                rendered = _render(dag, args[args.index("--as-of") + 1])
            tasks[task.task_id] = {
                "operator": type(task).__name__,
                "application": getattr(task, "application", None),
                "application_args": args,
                "as_of_rendered": rendered,
                "retries": task.retries,
                "conn_id": getattr(task, "conn_id", None) or getattr(task, "_conn_id", None),
            }
        edges = sorted(
            [t.task_id, down] for t in dag.tasks for down in sorted(t.downstream_task_ids)
        )
        timetable = getattr(dag, "timetable", None)
        dags[dag_id] = {
            "tasks": tasks,
            "edges": edges,
            "schedule": getattr(timetable, "summary", None) or str(getattr(dag, "schedule", "")),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
        }
    out = {
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "heavy_modules": heavy,
        "dags": dags,
    }
    text = json.dumps(out, indent=2, default=str)
    if out_file is not None:
        out_file.write_text(text)
    else:
        print(text)
    return 0 if not bag.import_errors else 1


if __name__ == "__main__":
    sys.exit(main())
