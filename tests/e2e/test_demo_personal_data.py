"""No personal data where it does not belong (issue 23): a regex scan of the demo's run log,
log files, console output, HTML report and MLflow store finds no e-mail address and none of
the demo people's phone numbers.

Phones are found the way :mod:`cdp.privacy.redact` finds them (digits with the separators
people write), then compared on their last nine digits with the phones silver holds, so that
timestamps, row counts and versions are not mistaken for phones.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pyspark.sql import SparkSession

from cdp import tables as T
from cdp.config import load_config
from cdp.privacy.redact import _EMAIL, _PHONE_CANDIDATE, PHONE, _phone
from cdp.storage import open_store
from conftest import DemoRun


def _texts(root: Path) -> Iterator[tuple[str, str]]:
    """(where, text) of the logs, the report and every file of the MLflow store (the SQLite
    database included: params, tags and metric names live there)."""
    for folder in ("logs", "reports", "mlflow"):
        for path in sorted((root / folder).rglob("*")):
            if path.is_file():
                yield str(path.relative_to(root)), _text_of(path)


def _text_of(path: Path) -> str:
    """A file's text; a Parquet file's string cells (a model's trees are doubles whose bytes,
    read as text, once matched the e-mail pattern: '@' between two printable runs)."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return "\n".join(
            str(v)
            for col in table.columns
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
            for v in col.to_pylist()
            if v is not None
        )
    return path.read_bytes().decode("utf-8", "ignore")


def _phone_tails(spark: SparkSession, root: Path) -> set[str]:
    store = open_store(spark, load_config(env="test", overrides={"data_root": str(root)}))
    tails: set[str] = set()
    for table in T.CANONICAL_TABLES:
        if not store.exists(table.name):
            continue
        df = store.read(table.name)
        cols = [c for c in ("phone", "phone_raw") if c in df.columns]
        for row in df.select(*cols).collect():
            for value in row:
                digits = re.sub(r"\D", "", value or "")
                if len(digits) >= 9:
                    tails.add(digits[-9:])
    return tails


def _found(text: str, phone_tails: set[str]) -> list[str]:
    hits = [f"e-mail at {m.start()}" for m in _EMAIL.finditer(text)]
    for m in _PHONE_CANDIDATE.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if _phone(m) == PHONE and digits[-9:] in phone_tails:
            hits.append(f"phone at {m.start()}")
    return hits


def test_demo_logs_report_and_mlflow_hold_no_contacts(
    demo_run: DemoRun, spark: SparkSession
) -> None:
    demo_run.check()
    root = demo_run.data_root
    phone_tails = _phone_tails(spark, root)
    assert len(phone_tails) > 50  # the scan has something to look for
    texts = dict(_texts(root))
    assert any(w.startswith("logs/") for w in texts) and any("report" in w for w in texts)
    assert any(w.startswith("mlflow/artifacts") for w in texts)
    texts["console"] = demo_run.output
    store = open_store(spark, load_config(env="test", overrides={"data_root": str(root)}))
    run_log = store.read(T.RUN_LOG.name)
    texts["ops/run_log"] = "\n".join(str(r.asDict(recursive=True)) for r in run_log.collect())
    leaks = {where: hits for where, text in texts.items() if (hits := _found(text, phone_tails))}
    assert not leaks, {k: v[:5] for k, v in leaks.items()}
