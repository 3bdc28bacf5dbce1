"""Runs one stage: run id, log file, store, run-log row (also when the stage fails).

The stage sees the store through :class:`cdp.writecheck.RecordingStore`; a stage that writes a
table it does not declare in the stage graph fails (its writes are committed by then, and the
run log says why it failed).

Every stage runs holding the data root's lock (:mod:`cdp.lock`): a second run on the same data
root waits up to ``runner.lock_wait_seconds`` and then raises :class:`cdp.lock.LockHeld`
naming the holder, before it writes anything (no run-log row either).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from pyspark.sql import SparkSession

from cdp.config import CdpConfig
from cdp.lock import StageLock, hold
from cdp.pipeline import get_stage
from cdp.privacy.redact import error_text, message_text, traceback_text
from cdp.runlog import RUN_LOG_SCHEMA, RUN_LOG_TABLE, RunRecorder, make_run_id, utcnow
from cdp.stage import CONSOLE_SHOWN, StageContext
from cdp.storage import TableStore, open_store
from cdp.writecheck import RecordingStore, check_writes

log = logging.getLogger(__name__)


class StageFailed(RuntimeError):
    """A stage raised; the run is recorded as failed and its log kept."""

    def __init__(self, stage: str, run_id: str, log_path: str, cause: BaseException) -> None:
        # Redacted: Spark quotes offending values (personal data) into its messages.
        first_line = (message_text(cause).strip().splitlines() or [type(cause).__name__])[0]
        super().__init__(f"stage '{stage}' failed: {type(cause).__name__}: {first_line}")
        self.stage = stage
        self.run_id = run_id
        self.log_path = log_path
        self.cause = cause


@dataclass(frozen=True)
class StageResult:
    stage: str
    run_id: str
    status: str
    seconds: float
    rows_read: dict[str, int]
    rows_written: dict[str, int]
    rows_quarantined: dict[str, int]
    log_path: str
    metrics: dict[str, str] = field(default_factory=dict)
    # Why a ``partial`` run is partial (value-free); None for a plain success.
    error: str | None = None


def _file_handler(path: Path, level: str) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def run_stage(
    name: str,
    *,
    spark: SparkSession,
    config: CdpConfig,
    as_of: date | None = None,
    progress: Callable[[str], None] | None = None,
    store: TableStore | None = None,
) -> StageResult:
    """Run stage ``name`` and append its row to ``ops/run_log``; raise :class:`StageFailed`,
    or :class:`cdp.lock.LockHeld` when another run holds the data root."""
    get_stage(name)  # an unknown stage fails before the lock is taken
    started = utcnow()
    config_hash = config.config_hash()
    run_id = make_run_id(name, started, config_hash)
    with hold(
        config.data_root_uri,
        stage=name,
        run_id=run_id,
        ttl_seconds=config.runner.lock_ttl_seconds,
        wait_seconds=config.runner.lock_wait_seconds,
        enabled=config.runner.lock,
    ) as lock:
        return _run_held(
            name,
            spark=spark,
            config=config,
            as_of=as_of,
            progress=progress,
            store=store,
            started=started,
            run_id=run_id,
            lock=lock,
        )


def _run_held(
    name: str,
    *,
    spark: SparkSession,
    config: CdpConfig,
    as_of: date | None,
    progress: Callable[[str], None] | None,
    store: TableStore | None,
    started: datetime,
    run_id: str,
    lock: StageLock | None,
) -> StageResult:
    """:func:`run_stage` once the lock is held."""
    stage = get_stage(name)
    func = stage.load()
    config_hash = config.config_hash()
    log_path = Path(config.log_dir) / f"{run_id}.log"
    handler = _file_handler(log_path, "DEBUG")
    root_logger = logging.getLogger("cdp")
    root_logger.addHandler(handler)
    root_logger.setLevel(min(root_logger.level or logging.INFO, logging.INFO))
    store = store or open_store(spark, config)
    store.set_run_id(run_id)
    recorder = RunRecorder(
        run_id=run_id,
        job=name,
        env=config.env,
        config_hash=config_hash,
        backend=store.backend_name,
        started_at=started,
        as_of=as_of,
        log_path=str(log_path),
    )
    # Which rule, source and audience files this run read, by content, so two runs' logs show
    # which file changed between them (config_hash only says that something did).
    for key, digest in config.file_hashes().items():
        recorder.metric(f"config_file:{key}", f"sha256:{digest}")
    say = progress or (lambda message: None)

    def stage_progress(message: str) -> None:
        # Into the run's log file; the console shows it once, through ``say``.
        log.info("[%s] %s", name, message, extra={CONSOLE_SHOWN: True})
        say(f"[{name}] {message}")

    recording = RecordingStore(store)
    ctx = StageContext(
        spark=spark,
        config=config,
        store=recording,
        run=recorder,
        as_of=as_of,
        progress=stage_progress,
        log=logging.getLogger(f"cdp.stage.{name}"),
    )
    t0 = time.perf_counter()
    status, error, failure = "success", None, None
    log.info(
        "run %s of stage %s started (backend %s, config %s)",
        run_id,
        name,
        store.backend_name,
        config_hash,
    )
    try:
        func(ctx)
        check_writes(stage, recording.written)
        if recorder.incomplete:
            # Committed, but some input was set aside (a file quarantined whole): the run
            # log and the exit status say so, so a scheduler does not report plain success.
            status, error = "partial", "; ".join(recorder.incomplete)
        if lock is not None and lock.lost:
            # Committed by now; said loudly so that an operator checks what overlapped.
            recorder.metric("lock_lost", 1)
            log.error("run %s lost the data root's lock while it ran (%s)", run_id, lock.path)
    except BaseException as exc:
        status, failure = "failed", exc
        # The run log and the log file are read by people not entitled to personal data,
        # and Spark's errors quote values: both get the redacted text.
        error = error_text(exc)
        log.error("stage %s failed:\n%s", name, traceback_text(exc, traceback.format_exc()))
    finally:
        row = recorder.to_row(status=status, ended_at=utcnow(), error=error)
        try:
            store.append_rows(RUN_LOG_TABLE, [row], RUN_LOG_SCHEMA)
        except Exception:
            log.exception("could not append to %s", RUN_LOG_TABLE)
        root_logger.removeHandler(handler)
        handler.close()
    seconds = time.perf_counter() - t0
    if failure is not None:
        if isinstance(failure, KeyboardInterrupt):
            raise failure
        raise StageFailed(name, run_id, str(log_path), failure) from failure
    return StageResult(
        stage=name,
        run_id=run_id,
        status=status,
        seconds=seconds,
        rows_read=dict(recorder.rows_read),
        rows_written=dict(recorder.rows_written),
        rows_quarantined=dict(recorder.rows_quarantined),
        log_path=str(log_path),
        metrics=dict(recorder.metrics),
        error=error,
    )
