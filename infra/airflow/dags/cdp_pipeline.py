"""Airflow DAGs of the CDP: the daily pipeline and the on-demand stages, one
``SparkSubmitOperator`` per stage, both derived from ``cdp.pipeline.STAGES``.

* ``cdp_pipeline``: every stage with ``in_pipeline=True``, daily, with the stage graph's
  dependencies; ``as_of`` is the end of the run's data interval (``{{ data_interval_end | ds }}``).
* ``cdp_<stage>``: one unscheduled DAG per stage with ``in_pipeline=False`` (maintenance,
  backtests ...), triggered by hand or by another system.

Deploying (see the README, "Deploying"):

1. ``infra/build.sh`` on a machine like the cluster's nodes; copy ``dist/`` to the Airflow
   workers (``CDP_DIST``, default ``/opt/cdp/dist``).
2. In the scheduler's and workers' environment: ``pip install apache-airflow-providers-apache-spark``
   and ``pip install --no-deps dist/cdp_spark-*.whl`` (this file imports only ``cdp.pipeline``,
   which needs nothing beyond the standard library).
3. An Airflow connection (``CDP_SPARK_CONN_ID``, default ``spark_default``) whose host is the
   master (``yarn``, ``k8s://...``, ``spark://...``) and whose extra may set ``deploy-mode``.
4. ``MLFLOW_TRACKING_URI`` and ``CDP_*`` variables in the workers' environment reach the driver
   (client mode); ``CDP_ENV`` (default ``cluster``) picks ``conf/<env>.yaml``.

Parsing this file imports no Spark and touches no database: only ``cdp.pipeline`` and two small
files of ``dist/`` (when present) are read.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG  # type: ignore[no-redef,attr-defined]

import cdp
from cdp.pipeline import STAGES, Stage, pipeline_stages, topological

DIST = Path(os.environ.get("CDP_DIST", "/opt/cdp/dist"))
CONN_ID = os.environ.get("CDP_SPARK_CONN_ID", "spark_default")
CDP_ENV = os.environ.get("CDP_ENV", "cluster")
# The date the stages compute for: the end of the data interval, so the run that starts
# after a day closes computes as of that day's end (Airflow 2 and 3 timetables alike).
AS_OF = "{{ data_interval_end | ds }}"

DEFAULT_ARGS = {
    "owner": "cdp",
    "retries": int(os.environ.get("CDP_AIRFLOW_RETRIES", "2")),
    "retry_delay": timedelta(minutes=10),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(hours=6),
}


def _packages() -> str | None:
    """Delta + GraphFrames coordinates: ``CDP_SPARK_PACKAGES`` ('' for none) or the build's."""
    if "CDP_SPARK_PACKAGES" in os.environ:
        return os.environ["CDP_SPARK_PACKAGES"] or None
    try:
        return (DIST / "packages.txt").read_text().strip() or None
    except OSError:
        return None


def _env_archive() -> Path | None:
    """The packed executors' environment of this version, when the build made one."""
    found = sorted(DIST.glob(f"cdp-env-{cdp.__version__}.*"))
    return found[0] if found else None


def spark_submit_task(stage: Stage, *, as_of: str | None = AS_OF) -> SparkSubmitOperator:
    """One stage as ``spark-submit dist/cdp_job.py STAGE --env ENV [--as-of DATE]``."""
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
    }
    archive = _env_archive()
    if archive is not None:
        conf["spark.pyspark.python"] = "./environment/bin/python"
    mlflow_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if mlflow_uri:
        conf["spark.executorEnv.MLFLOW_TRACKING_URI"] = mlflow_uri
    args = [stage.name, "--env", CDP_ENV]
    if as_of is not None:
        args += ["--as-of", as_of]
    return SparkSubmitOperator(
        task_id=stage.name,
        doc_md=stage.description,
        conn_id=CONN_ID,
        application=str(DIST / "cdp_job.py"),
        application_args=args,
        py_files=str(DIST / f"cdp-{cdp.__version__}.zip"),
        archives=f"{archive}#environment" if archive is not None else None,
        packages=_packages(),
        conf=conf,
        env_vars={"CDP_CONF_DIR": os.environ.get("CDP_CONF_DIR", str(DIST / "conf"))},
        name=f"cdp-{stage.name}",
    )


def _wire(stages: list[Stage], tasks: dict[str, SparkSubmitOperator]) -> None:
    for stage in stages:
        for upstream in stage.depends_on:
            if upstream in tasks:
                tasks[upstream] >> tasks[stage.name]


with DAG(
    dag_id="cdp_pipeline",
    description="Daily CDP pipeline: " + " -> ".join(s.name for s in pipeline_stages()),
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    # Stages of one run write the tables the next run reads: runs do not overlap.
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["cdp"],
) as pipeline_dag:
    _stages = pipeline_stages()
    _tasks = {s.name: spark_submit_task(s, as_of=AS_OF) for s in _stages}
    _wire(_stages, _tasks)

# On-demand stages (maintenance, backtests ...): one unscheduled DAG each, triggered by hand
# or by another system (`airflow dags trigger cdp_<stage>`); as_of is the trigger's date.
for _stage in topological(s for s in STAGES if not s.in_pipeline):
    with DAG(
        dag_id=f"cdp_{_stage.name}",
        description=f"On demand: {_stage.description}",
        schedule=None,
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["cdp", "on-demand"],
    ):
        spark_submit_task(_stage, as_of=AS_OF)
