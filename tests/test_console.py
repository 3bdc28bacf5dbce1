"""The console of a stage run (`cdp.console`): the live status line draws only on a terminal,
shows Spark's task counts while a job runs, keeps messages on their own lines, and `--json`
summaries carry counts, never data."""

from __future__ import annotations

import io
import json
import threading
import time

from pyspark.sql import SparkSession

from cdp.console import ProgressDisplay, json_line, stage_summary
from cdp.runner import StageResult


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_gets_the_messages_only() -> None:
    out = io.StringIO()
    display = ProgressDisplay(out, mode="auto", interval=0.01)
    display.start(None, "silver")
    display.say("[silver] crm: 10 rows")
    time.sleep(0.05)
    display.stop()
    assert out.getvalue() == "[silver] crm: 10 rows\n"


def test_a_terminal_shows_spark_tasks_while_a_job_runs(spark: SparkSession) -> None:
    out = Terminal()
    display = ProgressDisplay(out, mode="auto", interval=0.05)
    display.start(spark, "identity")

    def slow(rows):  # type: ignore[no-untyped-def]
        time.sleep(0.5)
        return rows

    job = threading.Thread(
        target=lambda: spark.sparkContext.parallelize(range(8), 4).mapPartitions(slow).count()
    )
    job.start()
    deadline = time.monotonic() + 60
    while "tasks" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    display.say("[identity] components: 3 rounds")
    job.join()
    display.stop()
    text = out.getvalue()
    assert "\r\x1b[2K" in text
    assert "spark: 1 stage running, " in text and "/4 tasks" in text
    # The message is on a line of its own, and the status line then names it.
    assert "\r\x1b[2K[identity] components: 3 rounds\n" in text
    assert "identity 0:0" in text and "· components: 3 rounds" in text
    assert text.endswith("\r\x1b[2K")  # stop() leaves no status line behind


def test_off_never_draws_even_on_a_terminal() -> None:
    out = Terminal()
    display = ProgressDisplay(out, mode="off", interval=0.01)
    display.start(None, "profile")
    time.sleep(0.05)
    display.say("[profile] done")
    display.stop()
    assert out.getvalue() == "[profile] done\n"


def test_stage_summary_is_counts_and_ids() -> None:
    result = StageResult(
        stage="silver",
        run_id="r-1",
        status="success",
        seconds=12.3456,
        rows_read={"bronze/crm": 10, "bronze/pos": 5},
        rows_written={"silver/person_records": 9, "silver/_quarantine": 1},
        rows_quarantined={"silver/person_records": 1},
        log_path="/logs/r-1.log",
    )
    doc = json.loads(json_line(stage_summary(2, 3, result)))
    assert doc == {
        "type": "stage",
        "index": 2,
        "of": 3,
        "stage": "silver",
        "status": "success",
        "run_id": "r-1",
        "seconds": 12.346,
        "rows_read": 15,
        "rows_written": 10,
        "rows_quarantined": 1,
        "tables_written": {"silver/_quarantine": 1, "silver/person_records": 9},
        "log": "/logs/r-1.log",
        "error": None,
    }
