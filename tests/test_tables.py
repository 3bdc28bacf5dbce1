"""The table catalog, the tables the stage graph declares, and the check of undeclared writes."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cdp import tables as T
from cdp.pipeline import STAGES, Stage
from cdp.storage.base import CommitResult, TableStore
from cdp.writecheck import RecordingStore, UndeclaredWrite, check_writes


def test_every_table_is_named_once_and_its_schema_owner_exists() -> None:
    names = [t.name for t in T.CATALOG]
    assert len(names) == len(set(names))
    for table in T.CATALOG:
        assert table.name.split("/", 1)[0] == table.layer.value, table.name
        module, attr = table.schema_owner.split(":")
        assert hasattr(importlib.import_module(module), attr), table.schema_owner


def test_patterns_name_and_match_concrete_tables() -> None:
    assert T.BRONZE_SOURCE.named(source="crm") == "bronze/crm"
    assert T.BRONZE_SOURCE.matches("bronze/crm")
    assert not T.BRONZE_SOURCE.matches("bronze/_quarantine")  # a table of its own
    assert not T.BRONZE_SOURCE.matches("silver/crm") and not T.BRONZE_SOURCE.matches("bronze/a/b")
    assert T.lookup("bronze/crm") is T.BRONZE_SOURCE
    assert T.lookup("gold/identity_map") is T.IDENTITY_MAP
    with pytest.raises(KeyError, match="not in the catalog"):
        T.lookup("gold/nothing")
    with pytest.raises(ValueError, match="source"):
        T.BRONZE_SOURCE.named()
    assert T.silver_table("events") == T.EVENTS.name


def test_stages_declare_catalog_tables_and_every_table_has_a_writer() -> None:
    catalog = set(T.CATALOG) | {T.ANY_TABLE}
    written: set[T.Table] = set()
    for stage in STAGES:
        for table in (*stage.reads, *stage.optional_reads, *stage.writes):
            assert table in catalog, (stage.name, table)
        assert not set(stage.reads) & set(stage.optional_reads), stage.name
        written |= set(stage.writes)
    # The run log is written by the runner, around every stage.
    assert set(T.CATALOG) - written == {T.RUN_LOG}


class FakeStore(TableStore):
    """Writes nothing; remembers what it was asked to write (and the run-log rows)."""

    backend_name = "fake"

    def __init__(self, root: str) -> None:
        super().__init__(None, root)  # type: ignore[arg-type]
        self.calls: list[tuple[str, str]] = []

    def _commit(self, op: str, name: str) -> CommitResult:
        self.calls.append((op, name))
        return CommitResult(table=name, version=0, operation=op)

    def exists(self, name: str) -> bool:
        return False

    def read(self, name: str, **kwargs: Any) -> Any:
        raise AssertionError("not read")

    def version(self, name: str) -> int | None:
        return None

    def schema(self, name: str) -> Any:
        raise AssertionError("not read")

    def history(self, name: str, limit: int | None = None) -> list[Any]:
        return []

    def info(self, name: str) -> Any:
        raise AssertionError("not read")

    def append(self, name: str, df: Any, **kwargs: Any) -> CommitResult:
        return self._commit("append", name)

    def append_rows(self, name: str, rows: Sequence[Any], schema: Any, **kw: Any) -> CommitResult:
        return self._commit("append_rows", name)

    def overwrite(self, name: str, df: Any, **kwargs: Any) -> CommitResult:
        return self._commit("overwrite", name)

    def merge(self, name: str, source: Any, **kwargs: Any) -> CommitResult:
        return self._commit("merge", name)

    def replace_where(self, name: str, df: Any, predicate: str, **kw: Any) -> CommitResult:
        return self._commit("replace_where", name)

    def delete(self, name: str, predicate: str) -> CommitResult:
        return self._commit("delete", name)

    def vacuum(self, name: str, **kwargs: Any) -> list[str]:
        self._commit("vacuum", name)
        return []

    def optimize(self, name: str, **kwargs: Any) -> dict[str, Any]:
        self._commit("optimize", name)
        return {}


def test_recording_store_passes_calls_through_and_remembers_the_tables_written() -> None:
    inner = FakeStore("/nowhere")
    store = RecordingStore(inner)
    store.set_run_id("r1")
    assert inner.run_id == "r1" and store.backend_name == "fake"
    assert store.exists("gold/x") is False and store.version("gold/x") is None
    store.overwrite("gold/customer_profile", None)
    store.merge("gold/audience_membership", None, keys=["audience"])
    store.append_rows("gold/audience_runs", [], None)
    store.overwrite("gold/customer_profile", None)
    assert store.written == [
        "gold/customer_profile",
        "gold/audience_membership",
        "gold/audience_runs",
    ]
    assert [op for op, _ in inner.calls] == ["overwrite", "merge", "append_rows", "overwrite"]
    assert store._commit("x", "y").operation == "x"  # anything else reaches the real store


def test_an_undeclared_write_names_the_stage_and_the_table() -> None:
    stage = Stage("demo", "m:f", "a stage", writes=(T.CUSTOMER_PROFILE, T.BRONZE_SOURCE))
    check_writes(stage, ["gold/customer_profile", "bronze/crm"])
    with pytest.raises(UndeclaredWrite) as err:
        check_writes(stage, ["gold/customer_profile", "gold/identity_map", "bronze/_quarantine"])
    message = str(err.value)
    assert "stage 'demo'" in message
    assert "gold/identity_map, bronze/_quarantine" in message and "writes=" in message
    check_writes(Stage("any", "m:f", "", writes=(T.ANY_TABLE,)), ["gold/whatever"])


def writes_undeclared(ctx: Any) -> None:
    ctx.store.overwrite(T.CUSTOMER_PROFILE.name, None)
    ctx.store.overwrite(T.IDENTITY_MAP.name, None)


def test_the_runner_fails_a_stage_that_writes_an_undeclared_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdp import runner
    from cdp.config import load_config

    stage = Stage(
        "profile_like",
        f"{__name__}:writes_undeclared",
        "writes one table it declares and one it does not",
        writes=(T.CUSTOMER_PROFILE,),
    )
    monkeypatch.setattr(runner, "get_stage", lambda name: stage)
    config = load_config(env="test", overrides={"data_root": str(tmp_path / "data")})
    store = FakeStore(str(tmp_path / "data"))
    with pytest.raises(runner.StageFailed) as err:
        runner.run_stage("profile_like", spark=None, config=config, store=store)  # type: ignore[arg-type]
    assert str(err.value).startswith("stage 'profile_like' failed: UndeclaredWrite: ")
    assert "wrote gold/identity_map, which it does not declare" in str(err.value)
    # The run is logged as failed, by the runner, with the real store.
    assert store.calls[-1] == ("append_rows", T.RUN_LOG.name)
