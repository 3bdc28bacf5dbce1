"""Export: audience members to a local directory and to a real S3-compatible HTTP endpoint
(moto's threaded server): layout, manifest checksums, hashed identifiers, consent filtering,
an interrupted export, multipart uploads and retries."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
import yaml
from botocore.exceptions import ClientError
from pyspark.sql import Row, SparkSession
from pyspark.sql.types import (
    ArrayType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from cdp import faults
from cdp.config import CdpConfig, load_config
from cdp.export.settings import ExportConfig
from cdp.export.sink import MIB, open_sink, transfer_config, with_retries
from cdp.runner import StageFailed, run_stage
from cdp.storage import TableStore, open_store
from conftest import moto_s3

CONSENT = StructType(
    [
        StructField("purpose", StringType()),
        StructField("channel", StringType()),
        StructField("status", StringType()),
        StructField("consent_time", TimestampType()),
        StructField("source", StringType()),
    ]
)
PROFILE = StructType(
    [
        StructField("customer_id", StringType()),
        StructField("email", StringType()),
        StructField("phone", StringType()),
        StructField("consents", ArrayType(CONSENT)),
        StructField("frequency", LongType()),
        StructField("as_of", DateType()),
    ]
)
SCORES = StructType(
    [
        StructField("customer_id", StringType()),
        StructField("model_name", StringType()),
        StructField("model_version", StringType()),
        StructField("score", DoubleType()),
        StructField("decile", IntegerType()),
        StructField("as_of", DateType()),
        StructField("run_id", StringType()),
    ]
)
D = date(2024, 6, 1)
BUCKET = "activation"


def consent(status: str = "granted", at: datetime = datetime(2024, 1, 1)) -> list[Row]:
    return [Row(purpose="marketing", channel="email", status=status, consent_time=at, source="s")]


# customer -> (email as stored, phone, consents); all five are in the audience.
PEOPLE: dict[str, tuple[str | None, str | None, list[Row] | None]] = {
    "c1": (" Ann.Lee@Example.COM ", "+44 7700 900123", consent()),
    "c2": ("bob@x.com", None, consent()),
    "c3": (None, "+14155552671", consent()),
    "c4": ("dee@x.com", "+4915112345678", consent()),
    "c5": ("eve@x.com", None, consent()),
}


def profile_rows(withdrawn: set[str]) -> list[tuple[Any, ...]]:
    later = datetime(2024, 5, 1)
    return [
        (cid, email, phone, consent("withdrawn", later) if cid in withdrawn else cons, 3, D)
        for cid, (email, phone, cons) in PEOPLE.items()
    ]


# silver/consents as the export reads it: one statement per person, naming the addresses it
# was given for (the export checks consent per address, at export time).
SILVER_CONSENTS = (
    "source string, source_record_id string, email string, phone string, crm_id string, "
    "customer_id string, purpose string, channel string, status string, "
    "consent_time timestamp, is_deleted boolean"
)


def consent_rows(withdrawn: set[str]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = [
        ("s", f"g-{cid}", email, phone, None, None, "marketing", "email", "granted",
         datetime(2024, 1, 1), False)
        for cid, (email, phone, _cons) in PEOPLE.items()
    ]  # fmt: skip
    rows += [
        ("s", f"w-{cid}", PEOPLE[cid][0], PEOPLE[cid][1], None, None, "marketing", "email",
         "withdrawn", datetime(2024, 5, 1), False)
        for cid in sorted(withdrawn)
    ]  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def world(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[CdpConfig, TableStore]]:
    """Profile + scores, the audiences stage run once; then c5 withdraws consent (after the
    evaluation), so only the export can leave c5 out."""
    root = tmp_path_factory.mktemp("export")
    auds = root / "audiences"
    auds.mkdir()
    (auds / "buyers.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "buyers",
                "purpose": "marketing",
                "channel": "email",
                "models": ["purchase_90d"],
                "rule": "purchase_90d_decile >= 5 AND frequency >= 1",
            }
        )
    )
    config = load_config(
        env="test",
        overrides={"data_root": str(root / "data"), "activation.audiences_dirs": [str(auds)]},
    )
    store = open_store(spark, config)
    store.overwrite("gold/customer_profile", spark.createDataFrame(profile_rows(set()), PROFILE))
    store.overwrite("silver/consents", spark.createDataFrame(consent_rows(set()), SILVER_CONSENTS))
    scores = [(c, "purchase_90d", "7", 0.9, 10, D, "score-run") for c in PEOPLE]
    store.overwrite("gold/propensity_scores", spark.createDataFrame(scores, SCORES))
    run_stage("audiences", spark=spark, config=config)
    assert store.read("gold/audience_membership").count() == 5
    store.overwrite("gold/customer_profile", spark.createDataFrame(profile_rows({"c5"}), PROFILE))
    store.overwrite("silver/consents", spark.createDataFrame(consent_rows({"c5"}), SILVER_CONSENTS))
    yield config, store


@pytest.fixture(scope="module")
def s3(world: Any) -> Iterator[str]:
    """A real S3-compatible endpoint over HTTP; credentials reach boto3 through the standard
    chain (environment variables), never through cdp's configuration."""
    with moto_s3(BUCKET) as endpoint:
        yield endpoint


def with_export(config: CdpConfig, **export: Any) -> CdpConfig:
    cfg = config.model_copy(deep=True)
    cfg.activation.export = ExportConfig(**export)
    return cfg


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


EXPECTED_HASHES = {
    "c1": (sha("ann.lee@example.com"), sha("+447700900123")),
    "c2": (sha("bob@x.com"), None),
    "c3": (None, sha("+14155552671")),
    "c4": (sha("dee@x.com"), sha("+4915112345678")),
}


def test_export_to_local_directory_csv_unhashed(spark: SparkSession, world: Any) -> None:
    config, _store = world
    cfg = with_export(config, format="csv", hash_identifiers=False, rows_per_file=2)
    result = run_stage("export", spark=spark, config=cfg)
    prefix = Path(config.data_root_uri) / "exports" / "buyers" / f"dt={D}" / f"run={result.run_id}"
    names = sorted(p.name for p in prefix.iterdir())
    assert names == ["_SUCCESS", "manifest.json", "part-00000.csv", "part-00001.csv"]
    manifest = json.loads((prefix / "manifest.json").read_text())
    assert manifest["row_count"] == 4 and manifest["counts"]["without_consent"] == 1
    assert [f["rows"] for f in manifest["files"]] == [2, 2]
    for f in manifest["files"]:
        assert hashlib.sha256((prefix / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    text = "".join((prefix / f"part-0000{i}.csv").read_text() for i in range(2))
    assert "ann.lee@example.com" in text and "+447700900123" in text and "eve@" not in text
    assert result.rows_written["export/buyers"] == 4
    assert not (Path(config.data_root_uri) / "_staging" / "export" / result.run_id).exists()


def test_export_to_s3_endpoint(spark: SparkSession, world: Any, s3: str) -> None:
    config, _store = world
    cfg = with_export(config, target=f"s3://{BUCKET}/cdp/out", endpoint_url=s3)
    result = run_stage("export", spark=spark, config=cfg)
    client = boto3.client("s3", endpoint_url=s3)
    prefix = f"cdp/out/buyers/dt={D}/run={result.run_id}"
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    keys = sorted(o["Key"].rsplit("/", 1)[1] for o in listed)
    assert keys == ["_SUCCESS", "manifest.json", "part-00000.parquet"]
    # The mark is written last.
    stamps = {o["Key"].rsplit("/", 1)[1]: o["LastModified"] for o in listed}
    assert stamps["_SUCCESS"] >= stamps["manifest.json"] >= stamps["part-00000.parquet"]

    manifest = json.loads(
        client.get_object(Bucket=BUCKET, Key=f"{prefix}/manifest.json")["Body"].read()
    )
    assert manifest["run_id"] == result.run_id and manifest["as_of"] == str(D)
    assert manifest["model_version"] == "purchase_90d=7"
    # Changed deliberately (issue 23): the customer id is off unless asked for.
    assert [c["name"] for c in manifest["schema"]] == ["email_sha256", "phone_sha256"]
    rows: set[tuple[str | None, str | None]] = set()
    for f in manifest["files"]:
        assert f["uri"] == f"s3://{BUCKET}/{prefix}/{f['path']}"
        body = client.get_object(Bucket=BUCKET, Key=f"{prefix}/{f['path']}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == f["sha256"] and len(body) == f["bytes"]
        table = pq.read_table(io.BytesIO(body))
        assert table.num_rows == f["rows"]
        for r in table.to_pylist():
            rows.add((r["email_sha256"], r["phone_sha256"]))
    assert rows == set(EXPECTED_HASHES.values())  # c5 withdrew consent after the evaluation
    # Every object was written with server-side encryption requested.
    for o in listed:
        head = client.head_object(Bucket=BUCKET, Key=o["Key"])
        assert head["ServerSideEncryption"] == "AES256", o["Key"]


def test_interrupted_export_leaves_no_manifest(
    spark: SparkSession, world: Any, s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, store = world
    cfg = with_export(config, target=f"s3://{BUCKET}/broken", endpoint_url=s3, rows_per_file=1)
    monkeypatch.setenv("CDP_FAULT_POINT", "export.after_upload")
    monkeypatch.setenv("CDP_FAULT_MODE", "raise")
    monkeypatch.setenv("CDP_FAULT_AFTER", "1")  # the second data file's upload fails
    faults.reset()
    with pytest.raises(StageFailed, match="fault injected") as err:
        run_stage("export", spark=spark, config=cfg)
    faults.reset()
    client = boto3.client("s3", endpoint_url=s3)
    left = client.list_objects_v2(Bucket=BUCKET, Prefix="broken/").get("Contents", [])
    names = {o["Key"].rsplit("/", 1)[1] for o in left}
    assert "manifest.json" not in names and "_SUCCESS" not in names
    assert names == set()  # the uploaded parts were removed too
    status = store.read("ops/run_log").where(f"run_id = '{err.value.run_id}'").collect()[0].status
    assert status == "failed"


def test_multipart_upload_and_transfer_config(s3: str, tmp_path: Path) -> None:
    cfg = ExportConfig(
        target=f"s3://{BUCKET}/mp",
        endpoint_url=s3,
        multipart_threshold_mb=5,
        multipart_chunksize_mb=5,
        max_concurrency=2,
    )
    tc = transfer_config(cfg)
    assert (tc.multipart_threshold, tc.multipart_chunksize, tc.max_concurrency) == (
        5 * MIB,
        5 * MIB,
        2,
    )
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * MIB))
    sink = open_sink(cfg, default_target="unused")
    sink.put_file(big, "big.bin")
    head = boto3.client("s3", endpoint_url=s3).head_object(Bucket=BUCKET, Key="mp/big.bin")
    assert head["ContentLength"] == 6 * MIB
    assert head["ETag"].strip('"').endswith("-2")  # a two-part multipart upload


def test_retries_back_off_on_transient_errors_only() -> None:
    waits: list[float] = []
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ClientError({"Error": {"Code": "SlowDown"}}, "PutObject")
        return "ok"

    assert with_retries(flaky, what="t", attempts=5, base_seconds=0.1, sleep=waits.append) == "ok"
    assert len(waits) == 2 and 0.1 <= waits[0] <= 0.15 and 0.2 <= waits[1] <= 0.3

    def denied() -> None:
        raise ClientError({"Error": {"Code": "AccessDenied"}}, "PutObject")

    waits.clear()
    with pytest.raises(ClientError):
        with_retries(denied, what="t", attempts=5, base_seconds=0.1, sleep=waits.append)
    assert waits == []


def test_unknown_bucket_fails_before_writing(s3: str) -> None:
    cfg = ExportConfig(target="s3://no-such-bucket/x", endpoint_url=s3, max_attempts=1)
    with pytest.raises(Exception, match="bucket not usable"):
        open_sink(cfg, default_target="unused")


def test_empty_audience_still_gets_a_readable_file(spark: SparkSession, tmp_path: Path) -> None:
    from cdp.export.identifiers import export_rows
    from cdp.export.stage import stage_files

    empty = spark.createDataFrame([], "customer_id string, email string, phone string")
    files = stage_files(
        empty.repartitionByRange(1, "customer_id").transform(export_rows()),
        tmp_path / "out",
        fmt="parquet",
        rows_per_file=10,
    )
    assert [f.name for f in files] == ["part-00000.parquet"]
    table = pq.read_table(files[0])
    assert table.num_rows == 0
    # Changed deliberately (issue 23): no customer id unless asked for.
    assert table.schema.names == ["email_sha256", "phone_sha256"]


# --- keyed customer ids, plaintext refusal, encryption (issue 23, item 6) ----------------------


def read_rows(client: Any, prefix: str) -> list[dict[str, Any]]:
    manifest = json.loads(
        client.get_object(Bucket=BUCKET, Key=f"{prefix}/manifest.json")["Body"].read()
    )
    out: list[dict[str, Any]] = []
    for f in manifest["files"]:
        body = client.get_object(Bucket=BUCKET, Key=f"{prefix}/{f['path']}")["Body"].read()
        out += pq.read_table(io.BytesIO(body)).to_pylist()
    return out


def test_customer_ids_are_keyed_per_destination(spark: SparkSession, world: Any, s3: str) -> None:
    from cdp.privacy.keys import derive_key, pseudonym

    config, _store = world
    client = boto3.client("s3", endpoint_url=s3)
    by_dest: dict[str, dict[str, tuple[str | None, str | None]]] = {}
    for dest in ("dest_a", "dest_b"):
        cfg = with_export(
            config,
            target=f"s3://{BUCKET}/{dest}",
            endpoint_url=s3,
            include_customer_id=True,
            expected_bucket_owner="123456789012",  # moto's account
        )
        result = run_stage("export", spark=spark, config=cfg)
        rows = read_rows(client, f"{dest}/buyers/dt={D}/run={result.run_id}")
        ids = [r["customer_id"] for r in rows]
        assert ids == sorted(ids)  # files are sorted by the pseudonym, not by the internal id
        by_dest[dest] = {r["customer_id"]: (r["email_sha256"], r["phone_sha256"]) for r in rows}
    a, b = by_dest["dest_a"], by_dest["dest_b"]
    assert sorted(a.values(), key=str) == sorted(EXPECTED_HASHES.values(), key=str)
    assert not set(a) & set(b)  # the two destinations cannot join on the id
    assert not (set(a) | set(b)) & set(PEOPLE)  # never the raw ids
    key = derive_key(config.privacy_key(), f"export:s3://{BUCKET}/dest_a")
    assert {pseudonym(key, c): h for c, h in EXPECTED_HASHES.items()} == a


def test_plaintext_export_to_object_store_is_refused(world: Any) -> None:
    from pydantic import ValidationError

    from cdp.errors import ConfigError

    with pytest.raises(ValidationError, match="refused for object-store"):
        ExportConfig(target=f"s3://{BUCKET}/x", hash_identifiers=False)
    # The default target under an s3:// data root is refused too, before any request.
    with pytest.raises(ConfigError, match="refused for object-store"):
        open_sink(ExportConfig(hash_identifiers=False), default_target=f"s3://{BUCKET}/exports")
    # And a config file saying so does not load.
    config, _store = world
    with pytest.raises(ConfigError, match="refused for object-store"):
        load_config(
            env="test",
            overrides={
                "data_root": config.data_root_uri,
                "activation.export.target": f"s3://{BUCKET}/x",
                "activation.export.hash_identifiers": False,
            },
        )


def test_kms_encryption_and_bucket_owner_are_requested(s3: str, tmp_path: Path) -> None:
    client = boto3.client("s3", endpoint_url=s3)
    cfg = ExportConfig(
        target=f"s3://{BUCKET}/kms",
        endpoint_url=s3,
        sse="aws:kms",
        sse_kms_key_id="alias/cdp-exports",
        expected_bucket_owner="123456789012",
    )
    sink = open_sink(cfg, default_target="unused")
    small = tmp_path / "a.bin"
    small.write_bytes(b"x" * 10)
    sink.put_file(small, "a.bin")
    sink.put_bytes(b"{}", "m.json", "application/json")
    for key in ("kms/a.bin", "kms/m.json"):
        head = client.head_object(Bucket=BUCKET, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert "cdp-exports" in head.get("SSEKMSKeyId", "")
    with pytest.raises(Exception, match="sse_kms_key_id is only used"):
        ExportConfig(sse_kms_key_id="k")


# --- exactly once (issue 24) ------------------------------------------------------------------


def test_same_inputs_are_delivered_once_and_leftovers_of_a_killed_run_go(
    spark: SparkSession, world: Any, tmp_path: Path
) -> None:
    config, store = world
    target = tmp_path / "once"
    cfg = with_export(config, target=str(target))
    day = target / "buyers" / f"dt={D}"
    # What a run killed mid-upload leaves: a data file, no manifest, no mark.
    (day / "run=killed").mkdir(parents=True)
    (day / "run=killed" / "part-00000.parquet").write_bytes(b"partial")

    first = run_stage("export", spark=spark, config=cfg)
    assert sorted(p.name for p in day.iterdir()) == [f"run={first.run_id}"]
    assert first.rows_written["export/buyers"] == 4

    again = run_stage("export", spark=spark, config=cfg)
    assert sorted(p.name for p in day.iterdir()) == [f"run={first.run_id}"]
    assert again.rows_written["export/buyers"] == 0
    destination = f"{target}/buyers/dt={D}/run={first.run_id}"
    audits = store.read("ops/audit_log").where(f"destination like '%{destination}'").collect()
    assert len(audits) == 1 and audits[0].run_id == first.run_id

    # A run that died after sealing but before its audit row: the rerun writes only the row.
    kept = store.read("ops/audit_log").where(f"not destination like '%{destination}'")
    store.overwrite("ops/audit_log", kept.localCheckpoint())
    rerun = run_stage("export", spark=spark, config=cfg)
    assert sorted(p.name for p in day.iterdir()) == [f"run={first.run_id}"]
    audits = store.read("ops/audit_log").where(f"destination like '%{destination}'").collect()
    assert len(audits) == 1 and audits[0].run_id == rerun.run_id

    # Other settings are another delivery.
    other = run_stage(
        "export", spark=spark, config=with_export(config, target=str(target), rows_per_file=2)
    )
    assert sorted(p.name for p in day.iterdir()) == sorted(
        [f"run={first.run_id}", f"run={other.run_id}"]
    )
    assert other.rows_written["export/buyers"] == 4
