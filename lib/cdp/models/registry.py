"""The only module that talks to MLflow: experiments, runs, artifacts, the model registry.

* experiment ``/cdp/<env>/<model>``; registered model ``cdp_<env>_<model>``;
* with a local (SQLite or file) tracking store, artifacts live under
  ``<data_root>/mlflow/artifacts`` instead of MLflow's default ``./mlruns`` of the cwd;
* aliases: ``champion`` (what ``score`` loads) and ``challenger``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.spark
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from pyspark.ml import PipelineModel

CHAMPION = "champion"
CHALLENGER = "challenger"

log = logging.getLogger(__name__)


def _schema_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cdp-mlflow-schema"


def seed_sqlite_store(db: Path) -> bool:
    """Start a new SQLite tracking store as a copy of an empty one with MLflow's schema.

    MLflow creates a new store by running every migration of its history in turn (about
    2 s of one core here), once per data root: a cost each first run, each notebook on a
    fresh root and each test pays. The empty schema of this MLflow release is built once
    into the user's cache (``$XDG_CACHE_HOME/cdp-mlflow-schema``, keyed by the release) and
    copied. The copy holds no experiment: MLflow adds its default experiment, with this
    store's artifact location, when it opens the store, and checks the schema's revision
    as it would for any store. Returns whether it seeded ``db``; anything unexpected
    (another MLflow release's internals, a read-only cache) leaves the store to MLflow.
    """
    if db.exists():
        return False
    try:
        from mlflow.store.db.utils import _initialize_tables
        from sqlalchemy import create_engine

        template = _schema_cache() / f"mlflow-{mlflow.__version__}.db"
        if not template.exists():
            template.parent.mkdir(parents=True, exist_ok=True)
            building = template.with_name(f"{template.name}.{os.getpid()}.tmp")
            engine = create_engine(f"sqlite:///{building}")
            try:
                _initialize_tables(engine)
            finally:
                engine.dispose()
            os.replace(building, template)  # whole or absent, whoever builds it too
        copy = db.with_name(f".{db.name}.{os.getpid()}.tmp")
        shutil.copyfile(template, copy)
        try:
            os.link(copy, db)  # fails where another process created the store meanwhile
        except FileExistsError:
            return False
        finally:
            copy.unlink()
        return True
    except Exception as exc:  # MLflow creates the store the usual way
        log.debug("MLflow store not seeded from the cached schema: %s", type(exc).__name__)
        return False


def experiment_name(env: str, model: str) -> str:
    return f"/cdp/{env}/{model}"


def registered_name(env: str, model: str) -> str:
    return f"cdp_{env}_{model}"


def git_commit(start: str | Path | None = None) -> str | None:
    """The commit of the checkout holding ``start`` (or this file), read from ``.git``
    without running git. Packaged jobs have no ``.git``: the configuration's ``git_commit``
    (``CDP_GIT_COMMIT`` or ``GIT_COMMIT``) names it and wins over this."""
    here = Path(start or __file__).resolve()
    for parent in [here, *here.parents]:
        git = parent / ".git"
        if not git.is_dir():
            continue
        try:
            head = (git / "HEAD").read_text().strip()
            if not head.startswith("ref: "):
                return head
            ref = head[5:]
            ref_file = git / ref
            if ref_file.exists():
                return ref_file.read_text().strip()
            packed = git / "packed-refs"
            if packed.exists():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split(" ", 1)[0]
        except OSError:
            return None
        return None
    return None


@dataclass(frozen=True)
class ChampionInfo:
    version: str
    uri: str
    run_id: str | None


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    experiment_id: str
    version: str | None  # None when not registered (backtests)
    model_uri: str


@contextmanager
def _environment_kept(*names: str) -> Iterator[None]:
    """Restore the environment variables ``names`` on exit to what they were on entry."""
    before = {n: os.environ.get(n) for n in names}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Registry:
    """MLflow tracking and registry for one environment."""

    def __init__(
        self,
        tracking_uri: str,
        env: str,
        *,
        registry_uri: str | None = None,
        artifact_root: str | None = None,
    ) -> None:
        self.env = env
        self.tracking_uri = tracking_uri
        if tracking_uri.startswith("sqlite:///"):
            db = Path(tracking_uri[len("sqlite:///") :])
            db.parent.mkdir(parents=True, exist_ok=True)
            seed_sqlite_store(db)
        # mlflow also exports these URIs to os.environ (for its subprocesses), where cdp's
        # configuration would read them back as the user's MLFLOW_TRACKING_URI: a second
        # data root opened later in this process (a notebook, a test, `cdp demo` then
        # `cdp report`) would then log to this one's store. Keep the environment as it was.
        with _environment_kept("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            mlflow.set_tracking_uri(tracking_uri)
            if registry_uri:
                mlflow.set_registry_uri(registry_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
        # MLflow draws a progress bar on stderr for every model it loads (scoring, the report):
        # carriage-return noise in a scheduler's log. A user who set the variable keeps theirs.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        local = tracking_uri.startswith(("sqlite:", "file:")) or "://" not in tracking_uri
        self.artifact_root = artifact_root if local else None

    # experiments and models ------------------------------------------------------------------
    def experiment_id(self, model: str) -> str:
        name = experiment_name(self.env, model)
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = None
        if self.artifact_root:
            location = Path(self.artifact_root, *name.strip("/").split("/")).resolve().as_uri()
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
        except MlflowException:  # created concurrently
            again = self.client.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)

    def champion(self, model: str) -> ChampionInfo | None:
        name = registered_name(self.env, model)
        try:
            mv = self.client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            return None
        return ChampionInfo(str(mv.version), f"models:/{name}@{CHAMPION}", mv.run_id)

    def aliases(self, model: str) -> dict[str, str]:
        """alias -> version of the registered model (empty when not registered)."""
        name = registered_name(self.env, model)
        try:
            rm = self.client.get_registered_model(name)
        except MlflowException:
            return {}
        return {str(k): str(v) for k, v in (rm.aliases or {}).items()}

    def set_alias(self, model: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(registered_name(self.env, model), alias, version)

    def tag_version(self, model: str, version: str, tags: Mapping[str, Any]) -> None:
        name = registered_name(self.env, model)
        for k, v in tags.items():
            self.client.set_model_version_tag(name, version, k, str(v))

    def load(self, uri: str) -> PipelineModel:
        """The Spark model at ``uri`` (``models:/<name>@champion``, ``runs:/...``)."""
        model = mlflow.spark.load_model(uri)
        if not isinstance(model, PipelineModel):  # pragma: no cover - we only log pipelines
            raise TypeError(f"{uri} is not a Spark PipelineModel")
        return model

    # runs --------------------------------------------------------------------------------------
    def log_run(
        self,
        *,
        model_name: str,
        run_name: str,
        model: PipelineModel | None,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        figures: Mapping[str, Any] | None = None,
        json_artifacts: Mapping[str, Any] | None = None,
        input_example: Any = None,
        output_example: Any = None,
        register: bool = True,
    ) -> LoggedModel:
        """One MLflow run with everything given; the Spark model logged (with signature and
        input example) and, when ``register``, registered as a new version."""
        exp = self.experiment_id(model_name)
        with mlflow.start_run(experiment_id=exp, run_name=run_name) as run:
            mlflow.log_params({k: _param(v) for k, v in params.items()})
            finite = {k: float(v) for k, v in metrics.items() if v is not None and v == v}
            mlflow.log_metrics(finite)
            mlflow.set_tags(dict(tags))
            with tempfile.TemporaryDirectory(prefix="cdp-mlflow-") as tmp:
                for name, fig in (figures or {}).items():
                    path = Path(tmp, f"{name}.png")
                    fig.savefig(path, dpi=90, bbox_inches="tight")
                    _close(fig)
                    mlflow.log_artifact(str(path), artifact_path="charts")
                for name, payload in (json_artifacts or {}).items():
                    path = Path(tmp, f"{name}.json")
                    path.write_text(json.dumps(payload, indent=2, default=str))
                    mlflow.log_artifact(str(path), artifact_path="evaluation")
            version: str | None = None
            model_uri = ""
            if model is not None:
                signature = (
                    infer_signature(input_example, output_example)
                    if input_example is not None
                    else None
                )
                info = mlflow.spark.log_model(
                    model,
                    "model",
                    signature=signature,
                    input_example=input_example,
                    # What a Spark ML pipeline needs to load is pyspark (MLflow's default
                    # list for the flavour; the pipelines hold only built-in stages). Left
                    # to infer them, MLflow loads the model in a fresh Python and JVM to see
                    # what it imports: 12 of the 14 s each logged model took.
                    pip_requirements=mlflow.spark.get_default_pip_requirements(),
                    registered_model_name=registered_name(self.env, model_name)
                    if register
                    else None,
                )
                model_uri = info.model_uri
                if register and info.registered_model_version is not None:
                    version = str(info.registered_model_version)
            return LoggedModel(run.info.run_id, exp, version, model_uri)

    def add_to_run(
        self, run_id: str, *, metrics: Mapping[str, float], tags: Mapping[str, str]
    ) -> None:
        """More metrics and tags on a finished run (a backtest's out-of-time results)."""
        for k, v in metrics.items():
            if v is not None and v == v:
                self.client.log_metric(run_id, k, float(v))
        for k, t in tags.items():
            self.client.set_tag(run_id, k, t)

    def run_data(self, run_id: str) -> Any:
        """The run (params, metrics, tags) as MLflow returns it (tests, demo summary)."""
        return self.client.get_run(run_id)

    def latest_run(self, model_name: str, tags: Mapping[str, str]) -> Any | None:
        """The newest finished run of ``model_name``'s experiment carrying ``tags`` (None when
        there is none): how a stage finds the model it trained before."""
        found = self.client.get_experiment_by_name(experiment_name(self.env, model_name))
        if found is None:
            return None
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in sorted(tags.items()))
        runs = self.client.search_runs(
            [found.experiment_id],
            filter_string=f"attributes.status = 'FINISHED'{' and ' + query if query else ''}",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def read_json(self, run_id: str, path: str) -> Any:
        """A JSON artifact of a run (``evaluation/<name>.json`` as :meth:`log_run` writes)."""
        import mlflow.artifacts

        text = mlflow.artifacts.load_text(f"runs:/{run_id}/{path}")
        return json.loads(text)

    def artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        return [f.path for f in self.client.list_artifacts(run_id, path)]


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def _close(fig: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def charts(
    *,
    importances: Sequence[tuple[str, float]],
    roc: Mapping[str, Sequence[tuple[float, float]]],
    lift: Mapping[str, Sequence[tuple[float, float]]],
    calibration: Sequence[Mapping[str, float]],
    title: str,
) -> dict[str, Any]:
    """Feature importance, ROC, lift and calibration figures (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out: dict[str, Any] = {}
    top = list(importances)[:25][::-1]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.28 * len(top) + 1)))
    ax.barh([n for n, _ in top], [v for _, v in top])
    ax.set_title(f"{title}: feature importance")
    out["feature_importance"] = fig

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, pts in roc.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name)
    ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{title}: ROC (holdout)")
    ax.legend(loc="lower right")
    out["roc"] = fig

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in lift.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name)
    ax.axhline(1.0, color="k", linestyle=":", linewidth=0.8)
    ax.set_xlabel("fraction of customers targeted (by score)")
    ax.set_ylabel("cumulative lift")
    ax.set_title(f"{title}: lift (holdout)")
    ax.legend(loc="upper right")
    out["lift"] = fig

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(
        [c["mean_predicted"] for c in calibration],
        [c["observed_rate"] for c in calibration],
        "o-",
        label="deciles",
    )
    ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax.set_xlabel("mean predicted")
    ax.set_ylabel("observed rate")
    ax.set_title(f"{title}: calibration (holdout)")
    out["calibration"] = fig
    return out
