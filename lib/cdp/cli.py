"""The ``cdp`` command. A stage run goes through :mod:`cdp.entry`, as every job entry point does.

cdp run STAGE... [--conf FILE] [--env ENV] [--as-of DATE] [--set KEY=VALUE]
cdp run all                      # every stage of the scheduled pipeline, in order
cdp tables                       # every table: version, rows, files, last run
cdp stages                       # the stage graph, with the tables each stage reads and writes
cdp sources                      # the declared sources and audiences (no Spark)
cdp init DIR [--force]           # scaffold a site: DIR/conf over the shipped defaults
cdp source draft PATH --name NAME [--out FILE]   # propose a source YAML from a sample (no Spark)
cdp source check NAME [--rows N] # rows of a source through mapping and standardizers, no writes
cdp generate --persons N --out DIR --seed S
cdp demo [--persons N]           # generate a landing zone and run every stage (demo profile)
cdp evaluate identity [--truth FILE]   # pairwise precision/recall of gold/identity_map
cdp report [--out FILE]          # self-contained HTML report of the latest run of each stage
cdp forget --email X | --phone X | --customer-id X | --file F [--type erase|suppress|unsuppress]
                                 # record privacy requests (the privacy stage carries them out)
cdp --version
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cdp import __version__
from cdp.config import CdpConfig, demo_overlay
from cdp.console import console_options
from cdp.entry import (
    LOCAL_EXTRA_MODULES,
    add_config_args,
    add_run_args,
    configure_logging,
    guarded,
    load_from_args,
    parse_as_of,
    result_line,
    run_stages,
    say,
)
from cdp.privacy.redact import safe_uri
from cdp.tables import IDENTITY_LINKS, IDENTITY_MAP, Table, layer_of

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from cdp.runner import StageResult
    from cdp.storage import TableStore

__all__ = ["LOCAL_EXTRA_MODULES", "build_parser", "main", "run_stages"]

log = logging.getLogger("cdp.cli")


def _open(config: CdpConfig) -> tuple[SparkSession, TableStore]:
    """The session and the table store of ``config`` (the commands that read tables)."""
    from cdp.session import build_session
    from cdp.storage import open_store

    spark = build_session(config)
    return spark, open_store(spark, config)


def print_tables(config: CdpConfig) -> int:
    _spark, store = _open(config)
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


def _table_list(required: Sequence[Table], optional: Sequence[Table] = ()) -> str:
    names = [t.name for t in required] + [f"{t.name}?" for t in optional]
    return ", ".join(names) or "-"


def print_stages() -> int:
    """One line per stage (its name first): dependencies, description, then its tables
    (``reads:``, an optional read marked ``?``; ``writes:``)."""
    from cdp.pipeline import STAGES

    for stage in STAGES:
        deps = ", ".join(stage.depends_on) or "-"
        flag = "" if stage.in_pipeline else "  (on demand)"
        print(
            f"{stage.name:14} after: {deps:24} {stage.description}{flag}"
            f"  | reads: {_table_list(stage.reads, stage.optional_reads)}"
            f"  | writes: {_table_list(stage.writes)}"
        )
    return 0


def print_sources(config: CdpConfig) -> int:
    """``cdp sources``: what the configuration declares (sources, then audiences), read and
    checked the way a run reads them, without Spark; the way to see which profile applies."""
    from cdp.audiences.spec import load_audiences
    from cdp.sources import load_sources

    print(f"conf: {', '.join(config.origins) or '(model defaults)'}")
    sources = load_sources(config)
    print(f"sources_dirs: {', '.join(config.source_dirs_resolved()) or '(none)'}")
    for spec in sources:
        print(f"source {spec.name:24} {spec.kind.value:12} {spec.format.value:8} {spec.path}")
    if not sources:
        print(
            "no sources declared: write one YAML file per source in a directory named by "
            "sources_dirs (a site from `cdp init DIR`: DIR/conf/sources/), or use the demo's "
            "with --conf conf/demo.yaml"
        )
    for audience in load_audiences(config):
        print(f"audience {audience.name:22} {audience.purpose} / {audience.channel}")
    return 0


def init(target: str, force: bool) -> int:
    """``cdp init DIR``: thin; :func:`cdp.site.init_site` does the work."""
    from cdp.site import init_site

    report = init_site(target, force=force)
    for relative in report.written:
        say(f"  wrote {relative}")
    result_line(
        f"site ready in {report.root}: declare sources in conf/sources/ "
        f"(see {report.root / 'README.md'}), then run cdp from that directory"
    )
    return 0


def source(config: CdpConfig, args: argparse.Namespace) -> int:
    """``cdp source draft`` / ``cdp source check``: thin; :mod:`cdp.onboarding` does the work.
    Only column names, counts and statuses are printed, never a sampled value."""
    if args.source_command == "draft":
        from cdp.onboarding.draft import draft_source, summary_lines

        drafted = draft_source(
            config, args.path, args.name, out=args.out, force=args.force, limit=args.limit
        )
        for line in summary_lines(drafted):
            say(line)
        result_line(f"wrote {drafted.out}: check it with `cdp source check {args.name}`")
        return 0
    from cdp.onboarding.check import check_source_rows, format_check
    from cdp.session import build_session

    report = check_source_rows(build_session(config), config, args.name, rows=args.rows)
    for line in format_check(report):
        result_line(line)
    return 0


def generate(config: CdpConfig, persons: int, out: str | None, seed: int) -> int:
    from cdp.generate import generate_landing
    from cdp.session import build_session

    spark = build_session(config)
    target = out or config.landing_uri
    say(f"generating {persons:,} persons (seed {seed}) into {target} ...")
    report = generate_landing(spark, out_dir=target, persons=persons, seed=seed)
    for source, count in sorted(report.rows.items()):
        say(f"  {source:22} {count:>12,} rows in {len(report.files.get(source, []))} files")
    say(f"done in {report.elapsed_seconds:.1f}s; ground truth in {Path(target) / '_ground_truth'}")
    return 0


def demo(config: CdpConfig, persons: int, seed: int) -> int:
    landing = Path(config.landing_uri)
    if not landing.exists() or not any(landing.iterdir()):
        rc = generate(config, persons, None, seed)
        if rc:
            return rc
    else:
        say(f"landing zone {landing} already has data; reusing it")
    results: list[StageResult] = []
    rc = run_stages(["all"], config, None, results)
    if rc == 0:
        print_tables(config)
        print_demo_summary(config, results)
        rc = report(config, None, None)
    return rc


def print_demo_summary(config: CdpConfig, results: Sequence[StageResult]) -> None:
    """What the demo did: rows per layer, quarantine, identity quality, models, exports."""
    from cdp.identity.evaluate import evaluate_identity, load_truth, resolved_records
    from cdp.identity.stage import exact_rules

    spark, store = _open(config)
    by_stage = {r.stage: r for r in results}
    print("\n== demo summary")
    layers: dict[str, int] = {}
    for name in store.list_tables():
        layer = layer_of(name)
        rows = store.info(name).num_rows or 0
        layers[layer] = layers.get(layer, 0) + rows
    print("rows per layer: " + ", ".join(f"{k} {v:,}" for k, v in sorted(layers.items())))
    for stage in ("ingest", "silver"):
        if stage in by_stage:
            q = by_stage[stage].rows_quarantined
            print(f"quarantined in {stage}: {sum(q.values()):,} " + _fmt_detail(q))
    truth = Path(config.landing_uri) / "_ground_truth" / "identity"
    if store.exists(IDENTITY_MAP.name) and truth.exists():
        metrics = evaluate_identity(
            spark,
            identity_map=store.read(IDENTITY_MAP.name),
            truth=load_truth(spark, str(truth)),
            records=resolved_records(store, exact_rules(config)),
        )
        print("identity vs ground truth:")
        print(metrics.format())
    train = by_stage.get("train")
    if train is not None:
        # The configured models that left metrics (other keys hold dots too: the digests of
        # the configuration files, ``config_file:<name>``, are not models).
        models = sorted(
            spec.name
            for spec in config.models.models
            if any(k.startswith(spec.name + ".") for k in train.metrics)
        )
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
            if model + ".oot_roc_auc" in m:
                print(
                    f"  out of time: ROC-AUC {m[model + '.oot_roc_auc']} (heuristic "
                    f"{m.get(model + '.heuristic_oot_roc_auc', '?')}), PR-AUC "
                    f"{m.get(model + '.oot_pr_auc', '?')} (heuristic "
                    f"{m.get(model + '.heuristic_oot_pr_auc', '?')})"
                )
            elif model + ".oot_skipped" in m:
                print(f"  out of time: skipped ({m[model + '.oot_skipped']})")
            if model + ".promotion" in m:
                print(f"  promotion: {m[model + '.promotion']}")
        print(f"MLflow tracking: {safe_uri(config.mlflow_tracking_uri)}")
    export = by_stage.get("export")
    if export is not None:
        for key, value in sorted(export.metrics.items()):
            if key.endswith(".uri"):
                print(f"export {key.split('.')[1]}: {safe_uri(str(value))}")


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
    from cdp.identity.evaluate import (
        evaluate_identity,
        format_tiers,
        load_truth,
        resolved_records,
        tier_scores,
    )
    from cdp.identity.stage import exact_rules

    path = truth or str(Path(config.landing_uri) / "_ground_truth" / "identity")
    spark, store = _open(config)
    if not store.exists(IDENTITY_MAP.name):
        say(
            f"cdp: error: no {IDENTITY_MAP.name} under {config.data_root_uri}; "
            "run 'cdp run identity'"
        )
        return 1
    truth_rows = load_truth(spark, path)
    identity_map = store.read(IDENTITY_MAP.name)
    records = resolved_records(store, exact_rules(config))
    if source:
        identity_map = identity_map.where(identity_map["source"] == source)
        truth_rows = truth_rows.where(truth_rows["source"] == source)
        records = records.where(records["source"] == source) if records is not None else None
    metrics = evaluate_identity(spark, identity_map=identity_map, truth=truth_rows, records=records)
    where = f" (source {source})" if source else ""
    print(f"identity evaluation against {path}{where}")
    print(metrics.format())
    if store.exists(IDENTITY_LINKS.name):
        links = store.read(IDENTITY_LINKS.name)
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
    add_run_args(p_run)

    p_tables = sub.add_parser("tables", help="list every table with version, rows and last run")
    add_config_args(p_tables)

    sub.add_parser("stages", help="show the stage graph")
    p_sources = sub.add_parser(
        "sources", help="list the declared sources and audiences (checks them; no Spark)"
    )
    add_config_args(p_sources)
    p_init = sub.add_parser(
        "init", help="scaffold a site: DIR/conf layered over the shipped defaults, no demo"
    )
    p_init.add_argument("dir", metavar="DIR", help="the site directory (created if absent)")
    p_init.add_argument(
        "--force", action="store_true", help="write the skeleton into a non-empty DIR/conf"
    )
    p_source = sub.add_parser(
        "source", help="onboard a source: draft its YAML from a sample, check it on a few rows"
    )
    source_sub = p_source.add_subparsers(dest="source_command", required=True)
    p_draft = source_sub.add_parser(
        "draft", help="propose a source YAML (kind, keys, mapping, with evidence) from a sample"
    )
    p_draft.add_argument("path", metavar="PATH", help="a file, or a folder of files")
    p_draft.add_argument("--name", required=True, help="the source's name (lower_snake_case)")
    p_draft.add_argument(
        "--out", default=None, metavar="FILE", help="default: <first sources dir>/NAME.yaml"
    )
    p_draft.add_argument("--force", action="store_true", help="write over an existing file")
    p_draft.add_argument("--limit", type=int, default=1_000, help="records to sample")
    add_config_args(p_draft)
    p_check = source_sub.add_parser(
        "check", help="run a few rows through bronze, mapping, standardizers and rules"
    )
    p_check.add_argument("name", metavar="NAME")
    p_check.add_argument("--rows", type=int, default=20)
    add_config_args(p_check)
    sub.add_parser(
        "packages", help="print the --packages value (Delta, GraphFrames jars) for spark-submit"
    )

    p_gen = sub.add_parser("generate", help="generate a synthetic landing zone with ground truth")
    p_gen.add_argument("--persons", type=int, default=10_000)
    p_gen.add_argument("--out", default=None, help="landing directory (default: the landing root)")
    p_gen.add_argument("--seed", type=int, default=42)
    add_config_args(p_gen)

    p_demo = sub.add_parser(
        "demo",
        help="generate data and run every stage on the embedded default "
        "(the demo profile, conf/demo.yaml, applied)",
    )
    p_demo.add_argument("--persons", type=int, default=2_000)
    p_demo.add_argument("--seed", type=int, default=42)
    add_config_args(p_demo)

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
    add_config_args(p_eval)

    p_report = sub.add_parser(
        "report", help="write a self-contained HTML report of the latest run of each stage"
    )
    p_report.add_argument(
        "--out", default=None, help="HTML file (default: <data root>/reports/run-report.html)"
    )
    p_report.add_argument(
        "--truth", default=None, metavar="FILE", help="identity ground truth, as for evaluate"
    )
    add_config_args(p_report)

    p_forget = sub.add_parser(
        "forget", help="record an erasure or suppression request (keyed pseudonyms only)"
    )
    who = p_forget.add_mutually_exclusive_group(required=True)
    who.add_argument("--email")
    who.add_argument("--phone")
    who.add_argument("--customer-id", dest="customer_id")
    who.add_argument(
        "--file", help="CSV with columns email, phone, customer_id[, type, received_at]"
    )
    p_forget.add_argument("--type", choices=["erase", "suppress", "unsuppress"], default="erase")
    p_forget.add_argument(
        "--phone-region", default=None, help="ISO country of a national phone number"
    )
    add_config_args(p_forget)
    return parser


def forget(config: CdpConfig, args: argparse.Namespace) -> int:
    """``cdp forget``: thin; :func:`cdp.privacy.requests.forget` does the work."""
    from cdp.privacy.requests import Subject, forget_file, record_forget

    if args.file:
        subjects = forget_file(args.file, default_type=args.type)
    else:
        subjects = [
            Subject(
                email=args.email,
                phone=args.phone,
                customer_id=args.customer_id,
                type=args.type,
                phone_region=args.phone_region,
            )
        ]
    _spark, store = _open(config)
    for request_id in record_forget(config, store, subjects):
        print(f"request {request_id}: {args.type} recorded (run the privacy stage to carry it out)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: _command(args))


def _command(args: argparse.Namespace) -> int:
    if args.command == "stages":
        return print_stages()
    if args.command == "packages":
        from cdp.session import jvm_packages

        print(jvm_packages())
        return 0
    if args.command == "init":
        return init(args.dir, args.force)
    if args.command == "demo":
        # The demo's sources and audiences; the user's --conf files still come on top.
        args.conf = [str(demo_overlay(args.conf_dir)), *args.conf]
    config = load_from_args(args)
    configure_logging(config)
    if args.command == "run":
        return run_stages(
            args.stages, config, parse_as_of(args.as_of), console=console_options(args)
        )
    if args.command == "tables":
        return print_tables(config)
    if args.command == "sources":
        return print_sources(config)
    if args.command == "source":
        return source(config, args)
    if args.command == "generate":
        return generate(config, args.persons, args.out, args.seed)
    if args.command == "evaluate":
        return evaluate_identity_cli(config, args.truth, args.source)
    if args.command == "demo":
        return demo(config, args.persons, args.seed)
    if args.command == "report":
        return report(config, args.out, args.truth)
    if args.command == "forget":
        return forget(config, args)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
