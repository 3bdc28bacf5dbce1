"""Erasure of past deliveries (`cdp.privacy.files.rewrite_exports`): the same code rewrites a
local export folder and an S3 bucket (moto's threaded server over HTTP), keeps the manifest's
checksums true, and leaves a suppression notice per audience."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdp.export.identifiers import destination_key
from cdp.export.settings import ExportConfig
from cdp.export.sink import Sink, open_sink
from cdp.privacy.files import SUPPRESSIONS, rewrite_exports
from cdp.privacy.keys import pseudonym
from cdp.privacy.resolve import Person
from conftest import moto_s3

BUCKET = "deliveries"
KEY = b"k" * 32
ERASED_EMAIL = "ann.lee@example.com"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _deliver(sink: Sink) -> None:
    """Two runs of one audience, as the export stage lays them out, one of them holding the
    person by e-mail digest and another by the destination's customer-id pseudonym."""
    id_key = destination_key(KEY, sink.root)
    runs = {
        "buyers/dt=2026-01-01/run=r1": [
            (pseudonym(id_key, "c1"), _sha(ERASED_EMAIL), None),
            (pseudonym(id_key, "c2"), _sha("bob@x.com"), None),
        ],
        "buyers/dt=2026-02-01/run=r2": [
            (pseudonym(id_key, "c1"), None, _sha("+447700900123")),
            (pseudonym(id_key, "c3"), _sha("dee@x.com"), None),
            (pseudonym(id_key, "c4"), _sha("eve@x.com"), None),
        ],
    }
    for prefix, rows in runs.items():
        table = pa.table(
            {
                "customer_id": [r[0] for r in rows],
                "email_sha256": [r[1] for r in rows],
                "phone_sha256": [r[2] for r in rows],
            }
        )
        buf = io.BytesIO()
        pq.write_table(table, buf)
        body = buf.getvalue()
        sink.put_bytes(body, f"{prefix}/part-00000.parquet", "application/octet-stream")
        manifest = {
            "row_count": len(rows),
            "counts": {"exported": len(rows)},
            "files": [
                {
                    "path": "part-00000.parquet",
                    "rows": len(rows),
                    "bytes": len(body),
                    "sha256": hashlib.sha256(body).hexdigest(),
                }
            ],
        }
        sink.put_bytes(json.dumps(manifest).encode(), f"{prefix}/manifest.json", "application/json")


def _person() -> Person:
    return Person(customers={"c1"}, values={"email": {ERASED_EMAIL}})


def _check_rewritten(sink: Sink) -> None:
    id_key = destination_key(KEY, sink.root)
    done = rewrite_exports(sink, _person(), ["req-1"], id_key)
    assert sorted((d.path, d.rows_deleted) for d in done) == [
        ("buyers/dt=2026-01-01/run=r1/part-00000.parquet", 1),
        ("buyers/dt=2026-02-01/run=r2/part-00000.parquet", 1),
    ]
    gone = pseudonym(id_key, "c1")
    for run, left in (("dt=2026-01-01/run=r1", 1), ("dt=2026-02-01/run=r2", 2)):
        body = sink.get_bytes(f"buyers/{run}/part-00000.parquet")
        rows = pq.read_table(io.BytesIO(body)).to_pylist()
        assert len(rows) == left
        assert gone not in {r["customer_id"] for r in rows}
        assert _sha(ERASED_EMAIL) not in {r["email_sha256"] for r in rows}
        manifest = json.loads(sink.get_bytes(f"buyers/{run}/manifest.json"))
        assert manifest["row_count"] == left
        assert manifest["counts"] == {"exported": left, "erased": 1}
        assert manifest["files"][0]["sha256"] == hashlib.sha256(body).hexdigest()
        assert manifest["files"][0]["bytes"] == len(body)
    notices = [k for k in sink.list_keys() if k.startswith(f"{SUPPRESSIONS}/buyers/")]
    assert len(notices) == 1
    notice = json.loads(sink.get_bytes(notices[0]))
    assert notice["requests"] == ["req-1"]
    assert {r["customer_id"] for r in notice["delete"]} == {gone}
    # A second pass finds nothing more to remove and writes no second notice.
    assert rewrite_exports(sink, _person(), ["req-1"], id_key) == []
    assert len([k for k in sink.list_keys() if k.startswith(SUPPRESSIONS)]) == 1


def test_rewrites_a_local_export_folder(tmp_path: Path) -> None:
    sink = open_sink(ExportConfig(), default_target=str(tmp_path / "exports"))
    _deliver(sink)
    _check_rewritten(sink)


def test_an_audience_delivered_empty_is_left_as_it_is(tmp_path: Path) -> None:
    """An audience with no members is exported as a zero-row file (the demo's first run has
    one): the rewrite reads past it instead of failing the privacy stage."""
    sink = open_sink(ExportConfig(), default_target=str(tmp_path / "exports"))
    _deliver(sink)
    empty = pa.table(
        {"customer_id": pa.array([], pa.string()), "email_sha256": pa.array([], pa.string())}
    )
    buf = io.BytesIO()
    pq.write_table(empty, buf)
    sink.put_bytes(buf.getvalue(), "lapsed/dt=2026-01-01/run=r1/part-00000.parquet", "x")
    _check_rewritten(sink)
    body = sink.get_bytes("lapsed/dt=2026-01-01/run=r1/part-00000.parquet")
    assert body == buf.getvalue()


@pytest.fixture()
def s3() -> Iterator[str]:
    with moto_s3(BUCKET) as endpoint:
        yield endpoint


def test_rewrites_an_s3_target_with_its_encryption(s3: str) -> None:
    cfg = ExportConfig(target=f"s3://{BUCKET}/cdp", endpoint_url=s3, max_attempts=2)
    sink = open_sink(cfg, default_target="unused")
    _deliver(sink)
    _check_rewritten(sink)
    client = boto3.client("s3", endpoint_url=s3)
    head = client.head_object(
        Bucket=BUCKET, Key="cdp/buyers/dt=2026-01-01/run=r1/part-00000.parquet"
    )
    assert head["ServerSideEncryption"] == "AES256"
