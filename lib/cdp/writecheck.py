"""The check that a stage writes only the tables it declares (``Stage.writes``).

The runner hands each stage a :class:`RecordingStore` around the real store: every call
passes through unchanged, and the names of the tables written are remembered. After the
stage, :func:`check_writes` fails the run when one of them is not declared, so every
end-to-end run of a stage exercises its declaration and the stage graph stays a true map of
which stage changes which table. Wrapping keeps the check out of the storage backends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame
from pyspark.sql.types import StructType

from cdp.storage.base import HistoryEntry, TableInfo, TableStore

if TYPE_CHECKING:
    from cdp.pipeline import Stage


class UndeclaredWrite(RuntimeError):
    """A stage wrote a table missing from its ``writes`` in ``cdp.pipeline.STAGES``."""


def _recorded(method: str) -> Callable[..., Any]:
    """A method that notes its table as written, then calls the wrapped store's ``method``."""

    def call(self: RecordingStore, name: str, *args: Any, **kwargs: Any) -> Any:
        self._wrote(name)
        return getattr(self.inner, method)(name, *args, **kwargs)

    call.__name__ = call.__qualname__ = method
    return call


class RecordingStore(TableStore):
    """Delegates to ``inner``; remembers every table written (data or files) in :attr:`written`."""

    def __init__(self, inner: TableStore) -> None:
        super().__init__(inner.spark, inner.root, commit_retries=inner.commit_retries)
        self.inner = inner
        self.backend_name = inner.backend_name
        self.run_id = inner.run_id
        self.written: list[str] = []

    def _wrote(self, name: str) -> None:
        if name not in self.written:
            self.written.append(name)

    def __getattr__(self, attr: str) -> Any:
        # Backend-specific helpers (not part of TableStore) reach the real store.
        return getattr(self.inner, attr)

    # Naming and reading: straight through -------------------------------------------------
    def table_uri(self, name: str) -> str:
        return self.inner.table_uri(name)

    def set_run_id(self, run_id: str | None) -> None:
        self.run_id = run_id
        self.inner.set_run_id(run_id)

    def exists(self, name: str) -> bool:
        return self.inner.exists(name)

    def read(self, name: str, **kwargs: Any) -> DataFrame:
        return self.inner.read(name, **kwargs)

    def version(self, name: str) -> int | None:
        return self.inner.version(name)

    def schema(self, name: str) -> StructType:
        return self.inner.schema(name)

    def history(self, name: str, limit: int | None = None) -> list[HistoryEntry]:
        return self.inner.history(name, limit)

    def info(self, name: str) -> TableInfo:
        return self.inner.info(name)

    def list_tables(self) -> list[str]:
        return self.inner.list_tables()

    # Writing: recorded, then through (every TableStore method that takes a table to change).
    append = _recorded("append")
    append_rows = _recorded("append_rows")
    overwrite = _recorded("overwrite")
    merge = _recorded("merge")
    replace_where = _recorded("replace_where")
    delete = _recorded("delete")
    vacuum = _recorded("vacuum")
    truncate_history = _recorded("truncate_history")
    optimize = _recorded("optimize")


def undeclared_writes(stage: Stage, written: Iterable[str]) -> list[str]:
    """The tables of ``written`` that ``stage`` does not declare, in the order written."""
    return [name for name in written if not stage.may_write(name)]


def check_writes(stage: Stage, written: Iterable[str]) -> None:
    """Raise :class:`UndeclaredWrite` naming the stage and every undeclared table."""
    undeclared = undeclared_writes(stage, written)
    if undeclared:
        raise UndeclaredWrite(
            f"stage '{stage.name}' wrote {', '.join(undeclared)}, which it does not declare: "
            f"add the table(s) to writes= of stage '{stage.name}' in cdp.pipeline.STAGES "
            "(and to the catalog, cdp.tables, when new)"
        )
