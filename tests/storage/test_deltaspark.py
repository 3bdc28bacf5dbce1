"""The delta-spark backend's conflict handling, without Delta's JVM classes: which errors are
conflicts, bounded retries, and never a second commit of a write that landed after all.
(The backend's table operations run in tests/storage/test_table_store.py where the jar is.)"""

from __future__ import annotations

from typing import Any

import pytest

from cdp.storage import ConcurrentWriteError, StorageError
from cdp.storage.deltaspark import DeltaSparkStore, _is_conflict


class ConcurrentAppendException(Exception):
    """Stands for delta.exceptions.ConcurrentAppendException (matched by name too)."""


def bare_store(found: list[Any]) -> DeltaSparkStore:
    store = object.__new__(DeltaSparkStore)  # no session: only the retry logic runs
    store.commit_retries = 2
    store._find_txn = lambda name, txn, after: found[0] if found else None  # type: ignore[method-assign]
    return store


def test_conflicts_are_recognised_by_class_or_by_the_jvm_name() -> None:
    assert _is_conflict(ConcurrentAppendException("files were added"))
    assert _is_conflict(RuntimeError("io.delta.exceptions.ConcurrentDeleteReadException: x"))
    assert _is_conflict(RuntimeError("[DELTA_CONCURRENT_APPEND] Files were added"))
    assert not _is_conflict(ValueError("column not found"))


def test_a_conflict_is_retried_a_bounded_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.sleep", lambda s: None)
    store = bare_store([])
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConcurrentAppendException("overtaken")
        return "done"

    assert store._retrying("t", "merge", "txn", 4, flaky) == "done" and calls["n"] == 3

    def always() -> None:
        calls["n"] += 1
        raise ConcurrentAppendException("overtaken")

    calls["n"] = 0
    with pytest.raises(ConcurrentWriteError, match="lost to concurrent writers 3 times"):
        store._retrying("t", "merge", "txn", 4, always)
    assert calls["n"] == 3  # the first try and commit_retries (2) more

    def not_a_conflict() -> None:
        raise ValueError("bad column")

    with pytest.raises(ValueError):
        store._retrying("t", "merge", "txn", 4, not_a_conflict)


def test_a_write_found_committed_is_not_run_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.sleep", lambda s: None)
    store = bare_store([(5, {"numOutputRows": 1})])
    calls = {"n": 0}

    def committed_then_failed() -> None:
        calls["n"] += 1
        raise ConcurrentAppendException("reported after the commit")

    with pytest.raises(StorageError, match="committed but then failed"):
        store._retrying("t", "append", "txn", 4, committed_then_failed)
    assert calls["n"] == 1
