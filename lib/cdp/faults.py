"""Named fault-injection points, so crash-safety tests can stop a real process mid-write.

``CDP_FAULT_POINT=<name>`` makes :func:`checkpoint` end the process at once (``os._exit``,
as a kill would: no cleanup, no ``finally``); ``CDP_FAULT_MODE=raise`` raises
:class:`InjectedFault` instead, for in-process tests; ``CDP_FAULT_MODE=sleep`` pauses there for
``CDP_FAULT_SLEEP_S`` seconds (default 30), once, and then carries on, so a test can act while a
writer is held at that point (vacuum during a write). ``CDP_FAULT_AFTER=N`` lets the point
pass N times before firing. ``CDP_FAULT_SIGNAL=<path>``, when set, is created as the point
fires (before the exit, raise or pause), so the test that armed it knows when it got there.
Unset, a checkpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

_counts: dict[str, int] = {}
_lock = threading.Lock()


class InjectedFault(RuntimeError):
    """Raised at a fault point when ``CDP_FAULT_MODE=raise``."""


def checkpoint(name: str) -> None:
    """Fire the configured fault if ``name`` is the armed fault point."""
    armed = os.environ.get("CDP_FAULT_POINT")
    if armed != name:
        return
    with _lock:
        seen = _counts.get(name, 0)
        _counts[name] = seen + 1
    after = int(os.environ.get("CDP_FAULT_AFTER", "0"))
    mode = os.environ.get("CDP_FAULT_MODE")
    # A pause happens once (the N+1-th pass); a crash or raise at every pass from then on.
    if seen < after or (mode == "sleep" and seen > after):
        return
    signal = os.environ.get("CDP_FAULT_SIGNAL")
    if signal:
        Path(signal).write_text(f"{name} {os.getpid()}\n", encoding="utf-8")
    if mode == "raise":
        raise InjectedFault(f"fault injected at {name}")
    if mode == "sleep":
        time.sleep(float(os.environ.get("CDP_FAULT_SLEEP_S", "30")))
        return
    os._exit(137)


def reset() -> None:
    """Forget how often each point has passed (tests)."""
    with _lock:
        _counts.clear()
