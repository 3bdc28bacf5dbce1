"""Consent fails closed (issue 23, item 4): from landing files through silver to the export.

A withdrawal silver cannot read (unknown status or purpose, a time that does not parse) is kept
as an "unknown" statement that withdraws; consent is checked per exported address, at export
time, from ``silver/consents``, so a withdrawal that lands after the audience run is honoured.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from pyspark.sql import Row, SparkSession
from pyspark.sql.types import (
    ArrayType,
    DateType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from cdp.config import load_config
from cdp.runner import run_stage
from cdp.silver.stage import QUARANTINE_TABLE
from cdp.storage import open_store

HEADER = "consent_id,email,phone,crm_contact_id,purpose,channel,status,consent_ts\n"
FIRST = HEADER + (
    # ann: a grant, then a withdrawal whose status silver does not know.
    "g-ann,ann@x.com,,,marketing,email,granted,2024-01-01 10:00:00\n"
    "w-ann,ann@x.com,,,marketing,email,revoked,2024-02-01 10:00:00\n"
    # bob: a grant, then a withdrawal whose time does not parse.
    "g-bob,bob@x.com,,,marketing,email,granted,2024-01-01 10:00:00\n"
    "w-bob,bob@x.com,,,marketing,email,withdrawn,yesterday\n"
    # cy: a grant, then a withdrawal for a purpose silver does not know.
    "g-cy,cy@x.com,,,marketing,email,granted,2024-01-01 10:00:00\n"
    "w-cy,cy@x.com,,,marketting,email,withdrawn,2024-02-01 10:00:00\n"
    # dee: a grant; the withdrawal lands after the audience run (LATER).
    "g-dee,dee@x.com,,,marketing,email,granted,2024-01-01 10:00:00\n"
    # eve: the grant is for her old address; the profile holds another one.
    "g-eve,eve.old@x.com,,,marketing,email,granted,2024-01-01 10:00:00\n"
    # fin: an unreadable statement, then a valid grant newer than it: exported again.
    "g-fin,fin@x.com,,,marketing,email,granted,2024-01-01 10:00:00\n"
    "w-fin,fin@x.com,,,marketing,email,maybe,2024-02-01 10:00:00\n"
    "r-fin,fin@x.com,,,marketing,email,granted,2024-03-01 10:00:00\n"
    # gus: the grant names his e-mail only; his phone is not exported.
    "g-gus,gus@x.com,,,marketing,email,granted,2024-01-01 10:00:00\n"
    # hal: a grant by e-mail, then a withdrawal keyed by his CRM id only (every address).
    "g-hal,hal@x.com,,,marketing,email,granted,2024-01-01 10:00:00\n"
    "w-hal,,,H1,marketing,email,withdrawn,2024-02-01 10:00:00\n"
)
LATER = HEADER + "w-dee,dee@x.com,,,marketing,email,withdrawn,2024-03-01 10:00:00\n"

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
D = date(2024, 6, 1)
GUS_PHONE = "+447700900123"
# customer -> profile e-mail (the profile's last run saw every grant, none of the withdrawals).
CUSTOMERS = {
    "k-ann": "ann@x.com",
    "k-bob": "bob@x.com",
    "k-cy": "cy@x.com",
    "k-dee": "dee@x.com",
    "k-eve": "eve@x.com",
    "k-fin": "fin@x.com",
    "k-gus": "gus@x.com",
    "k-hal": "hal@x.com",
}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Scenario:
    silver: dict[str, Any]  # source_record_id -> silver/consents row
    quarantined: int
    started: datetime
    before: set[tuple[str | None, str | None]]  # exported before dee's withdrawal landed
    after: set[tuple[str | None, str | None]]
    after_manifest: dict[str, Any]


def exported(root: Path, run_id: str) -> tuple[set[tuple[str | None, str | None]], dict[str, Any]]:
    prefix = root / "exports" / "reachable" / f"dt={D}" / f"run={run_id}"
    manifest = json.loads((prefix / "manifest.json").read_text())
    rows: set[tuple[str | None, str | None]] = set()
    for f in manifest["files"]:
        for r in pq.read_table(prefix / f["path"]).to_pylist():
            rows.add((r["email_sha256"], r["phone_sha256"]))
    return rows, manifest


@pytest.fixture(scope="module")
def scenario(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    root = tmp_path_factory.mktemp("consent")
    landing, sources, auds = root / "landing", root / "sources", root / "audiences"
    for d in (landing / "consents", sources, auds):
        d.mkdir(parents=True)
    (landing / "consents" / "d1.csv").write_text(FIRST)
    (sources / "consents.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "consents",
                "kind": "consent",
                "format": "csv",
                "path": "consents/*.csv",
                "options": {"header": "true"},
                "primary_key": ["consent_id"],
                "event_time": "consent_ts",
                "mapping": {
                    "source_record_id": "consent_id",
                    "email": "email",
                    "phone": "phone",
                    "crm_id": "crm_contact_id",
                    "purpose": "purpose",
                    "channel": "channel",
                    "status": "status",
                    "consent_time": "consent_ts",
                },
                "defaults": {"phone_region": "GB"},
            }
        )
    )
    (auds / "reachable.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "reachable",
                "purpose": "marketing",
                "channel": "email",
                "rule": "frequency >= 1",
            }
        )
    )
    config = load_config(
        env="test",
        overrides={
            "data_root": str(root / "data"),
            "landing_root": str(landing),
            "sources_dirs": [str(sources)],
            "activation.audiences_dirs": [str(auds)],
        },
    )
    store = open_store(spark, config)
    started = datetime.now()
    run_stage("ingest", spark=spark, config=config)
    run_stage("silver", spark=spark, config=config)
    silver = {r.source_record_id: r for r in store.read("silver/consents").collect()}
    quarantined = (
        store.read(QUARANTINE_TABLE).where("table = 'consents'").count()
        if store.exists(QUARANTINE_TABLE)
        else 0
    )

    granted = [
        Row(
            purpose="marketing",
            channel="email",
            status="granted",
            consent_time=datetime(2024, 1, 1),
            source="consents",
        )
    ]
    profile = [
        (cid, email, GUS_PHONE if cid == "k-gus" else None, granted, 2, D)
        for cid, email in CUSTOMERS.items()
    ]
    store.overwrite("gold/customer_profile", spark.createDataFrame(profile, PROFILE))
    store.overwrite(
        "gold/identity_identifiers",
        spark.createDataFrame(
            [("k-hal", "crm_id", "H1"), ("k-hal", "email", "hal@x.com")],
            "customer_id string, id_type string, id_value string",
        ),
    )
    run_stage("audiences", spark=spark, config=config)
    assert store.read("gold/audience_membership").count() == len(CUSTOMERS)

    first = run_stage("export", spark=spark, config=config)
    before, _ = exported(Path(config.data_root_uri), first.run_id)
    # dee withdraws after the audience run; only silver runs before the next export.
    (landing / "consents" / "d2.csv").write_text(LATER)
    run_stage("ingest", spark=spark, config=config)
    run_stage("silver", spark=spark, config=config)
    second = run_stage("export", spark=spark, config=config)
    after, manifest = exported(Path(config.data_root_uri), second.run_id)
    yield Scenario(silver, quarantined, started, before, after, manifest)


def test_unreadable_statements_are_kept_as_withdrawals(scenario: Scenario) -> None:
    s = scenario.silver
    assert scenario.quarantined == 0  # nothing a reader needs is left in the quarantine
    assert (s["w-ann"].status, s["w-ann"].status_raw) == ("unknown", "revoked")
    assert s["w-ann"].consent_time.date() == date(2024, 2, 1)
    assert "status_known" in s["w-ann"]._dq_warnings
    # The time that does not parse: processing time, so newer than every earlier grant.
    assert s["w-bob"].status == "unknown" and s["w-bob"].consent_time_raw == "yesterday"
    assert s["w-bob"].consent_time.date() >= scenario.started.date() - timedelta(days=1)
    # An unknown purpose withdraws every purpose.
    assert (s["w-cy"].status, s["w-cy"].purpose, s["w-cy"].purpose_raw) == (
        "unknown",
        "all",
        "marketting",
    )
    # Readable statements are untouched.
    assert (s["g-ann"].status, s["g-ann"].purpose) == ("granted", "marketing")
    assert s["w-hal"].status == "withdrawn"


def test_grant_then_bad_withdrawal_is_not_exported(scenario: Scenario) -> None:
    emails = {e for e, _p in scenario.before}
    for name in ("ann", "bob", "cy"):  # bad status, bad time, bad purpose
        assert sha(f"{name}@x.com") not in emails, name
    # A valid grant newer than the unreadable statement counts again.
    assert (sha("fin@x.com"), None) in scenario.before


def test_consent_is_per_address(scenario: Scenario) -> None:
    # gus: the grant named his e-mail, so his phone is not delivered.
    assert (sha("gus@x.com"), None) in scenario.before
    assert all(p is None for _e, p in scenario.before)
    # eve: the grant was for another of her addresses; the profile's is not exported.
    emails = {e for e, _p in scenario.before}
    assert sha("eve@x.com") not in emails and sha("eve.old@x.com") not in emails
    # hal: a withdrawal without an address, keyed by his CRM id, covers his e-mail.
    assert sha("hal@x.com") not in emails


def test_withdrawal_after_the_audience_run_is_honoured_at_export(scenario: Scenario) -> None:
    assert (sha("dee@x.com"), None) in scenario.before
    assert (sha("dee@x.com"), None) not in scenario.after
    assert scenario.after == scenario.before - {(sha("dee@x.com"), None)}
    counts = scenario.after_manifest["counts"]
    assert counts["members"] == len(CUSTOMERS)
    assert counts["exported"] == 2 and counts["without_consent"] == len(CUSTOMERS) - 2
