"""What a stage run shows on the console: a live progress line, and JSON summaries.

* :class:`ProgressDisplay` keeps one status line at the bottom of a terminal while a stage
  runs: the stage, its time, its last progress message, and the Spark jobs' task counts
  (read from Spark's status tracker, so a long join shows that it moves). It draws only
  when its stream is a terminal (``--progress auto``): a scheduler's captured stderr gets the
  progress lines, never carriage returns.
* :func:`stage_summary` is the ``--json`` line of one stage, for schedulers: counts, status,
  run id, log path; never a value from the data (errors are the redacted text).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from cdp.runner import StageResult

ProgressMode = Literal["auto", "on", "off"]
_CLEAR = "\r\x1b[2K"


@dataclass(frozen=True)
class ConsoleOptions:
    """``--json`` and ``--progress`` of a stage run."""

    json: bool = False
    progress: ProgressMode = "auto"


def add_console_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON summary per stage (and one for the run) on stdout, for schedulers",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help="live progress line on stderr: auto (only when stderr is a terminal), on, off",
    )


def console_options(args: argparse.Namespace) -> ConsoleOptions:
    return ConsoleOptions(
        json=bool(getattr(args, "json", False)), progress=getattr(args, "progress", "auto")
    )


class ProgressDisplay:
    """One redrawn status line on ``stream`` while a stage runs (see the module docstring).

    :meth:`say` prints a progress message above the line, so messages scroll as before and
    the status line stays at the bottom. Disabled (``mode="auto"`` on a stream that is not a
    terminal, or ``"off"``), it only prints the messages.
    """

    def __init__(
        self, stream: TextIO | None = None, mode: ProgressMode = "auto", interval: float = 0.5
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.enabled = mode == "on" or (mode == "auto" and bool(isatty()))
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._label = ""
        self._last = ""
        self._started = 0.0
        self._spark: SparkSession | None = None
        self._drawn = False

    def start(self, spark: SparkSession | None, label: str) -> None:
        """Show the line for ``label`` until :meth:`stop`."""
        self._spark, self._label, self._last = spark, label, ""
        self._started = time.monotonic()
        if not self.enabled:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="cdp-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Remove the line (the caller prints the stage's result next)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            self._erase()

    def say(self, message: str) -> None:
        """A progress message: printed once, above the status line."""
        with self._lock:
            self._erase()
            print(message, file=self.stream, flush=True)
            if message.startswith(f"[{self._label}] "):
                self._last = message.split("] ", 1)[1]
            if self._thread is not None:
                self._draw()

    def status_text(self) -> str:
        """The status line's text: stage, elapsed time, Spark tasks, last message."""
        elapsed = time.monotonic() - self._started
        parts = [f"{self._label} {int(elapsed // 60)}:{int(elapsed % 60):02d}"]
        tasks = self._tasks()
        if tasks is not None:
            stages, done, total = tasks
            parts.append(
                f"spark: {stages} stage{'s' if stages != 1 else ''} running, {done}/{total} tasks"
                if stages
                else "spark: idle"
            )
        if self._last:
            parts.append(self._last)
        return " · ".join(parts)

    def _tasks(self) -> tuple[int, int, int] | None:
        if self._spark is None:
            return None
        try:
            tracker = self._spark.sparkContext.statusTracker()
            found = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
        except Exception:  # the session is stopping: show no counts rather than fail the run
            return None
        infos = [i for i in found if i is not None]
        done = sum(int(i.numCompletedTasks) for i in infos)
        return len(infos), done, sum(int(i.numTasks) for i in infos)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            text = self.status_text()
            with self._lock:
                if not self._stop.is_set():
                    self._draw(text)

    def _draw(self, text: str | None = None) -> None:
        width = shutil.get_terminal_size((100, 20)).columns
        line = (text if text is not None else self.status_text())[: max(10, width - 1)]
        self.stream.write(_CLEAR + line)
        self.stream.flush()
        self._drawn = True

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write(_CLEAR)
            self.stream.flush()
            self._drawn = False


def _total(counts: dict[str, int]) -> int:
    return int(sum(counts.values()))


def stage_summary(index: int, of: int, result: StageResult) -> dict[str, Any]:
    """The ``--json`` object of a finished stage."""
    return {
        "type": "stage",
        "index": index,
        "of": of,
        "stage": result.stage,
        "status": result.status,
        "run_id": result.run_id,
        "seconds": round(result.seconds, 3),
        "rows_read": _total(result.rows_read),
        "rows_written": _total(result.rows_written),
        "rows_quarantined": _total(result.rows_quarantined),
        "tables_written": dict(sorted(result.rows_written.items())),
        "log": result.log_path,
        "error": result.error,
    }


def failed_summary(
    index: int, of: int, stage: str, error: str, run_id: str | None, log: str | None
) -> dict[str, Any]:
    """The ``--json`` object of a stage that failed or did not start."""
    return {
        "type": "stage",
        "index": index,
        "of": of,
        "stage": stage,
        "status": "failed",
        "run_id": run_id,
        "error": error,
        "log": log,
    }


def json_line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
