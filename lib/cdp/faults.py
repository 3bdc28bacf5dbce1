"""Named fault-injection points, so crash-safety tests can stop a real process mid-write.

``CDP_FAULT_POINT=<name>`` makes :func:`checkpoint` end the process at once (``os._exit``,
as a kill would: no cleanup, no ``finally``); ``CDP_FAULT_MODE=raise`` raises
:class:`InjectedFault` instead, for in-process tests. ``CDP_FAULT_AFTER=N`` lets the point
pass N times before firing. Unset, a checkpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import threading

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
    if seen < int(os.environ.get("CDP_FAULT_AFTER", "0")):
        return
    if os.environ.get("CDP_FAULT_MODE") == "raise":
        raise InjectedFault(f"fault injected at {name}")
    os._exit(137)


def reset() -> None:
    """Forget how often each point has passed (tests)."""
    with _lock:
        _counts.clear()
