"""The stage protocol and the context a stage runs in: the bottom of the stage graph.

Every stage module imports :class:`StageContext` from here; this module imports nothing of
cdp at run time (the types it names are for the type checker only), so the stage graph
(``cdp.pipeline``), the stages and the entry points can all depend on it without a circle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from cdp.config import CdpConfig
    from cdp.runlog import RunRecorder
    from cdp.storage import TableStore


# A log record's attribute: its message was already printed for the person at the terminal
# (a stage's progress line), so the console log handler leaves it out; log files keep it.
CONSOLE_SHOWN = "cdp_console_shown"


@dataclass
class StageContext:
    """Everything a stage needs, handed in; stages create no sessions and read no globals."""

    spark: SparkSession
    config: CdpConfig
    store: TableStore
    run: RunRecorder
    as_of: date | None = None
    progress: Callable[[str], None] = field(default=lambda message: None)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("cdp.stage"))


class StageFunction(Protocol):
    """A stage: reads and writes tables through ``ctx.store``, returns nothing.

    What it read, wrote and measured goes to ``ctx.run`` (the run log); it raises to fail.
    """

    def __call__(self, ctx: StageContext, /) -> None: ...
