"""Privacy requests as data: normalized, keyed pseudonyms only, deterministic ids; the CLI."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from cdp.cli import build_parser
from cdp.errors import ConfigError
from cdp.pipeline import get_stage, pipeline_stages
from cdp.privacy.keys import pseudonym
from cdp.privacy.requests import Subject, forget_file, request_row, subject_key
from cdp.privacy.resolve import Person, table_predicate

KEY = b"k" * 32
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_request_rows_hold_pseudonyms_of_normalized_identifiers_only() -> None:
    a = request_row(KEY, Subject(email="  Jane.Doe@Example.COM ", received_at=AT), origin="cli")
    b = request_row(KEY, Subject(email="jane.doe@example.com", received_at=AT), origin="cli")
    assert a["request_id"] == b["request_id"]  # same subject, type and time: one request
    assert a["subject_email"] == pseudonym(subject_key(KEY), "jane.doe@example.com")
    assert "example" not in repr(a)
    assert a["deadline"] == datetime(2026, 2, 1, 3, 4, 5, tzinfo=timezone.utc)
    other = request_row(
        KEY, Subject(email="jane.doe@example.com", type="suppress", received_at=AT), origin="cli"
    )
    assert other["request_id"] != a["request_id"]


def test_phone_is_hashed_in_e164_and_bad_subjects_are_refused() -> None:
    row = request_row(
        KEY, Subject(phone="020 7946 0958", phone_region="GB", received_at=AT), origin="cli"
    )
    assert row["subject_phone"] == pseudonym(subject_key(KEY), "+442079460958")
    with pytest.raises(ConfigError):
        request_row(KEY, Subject(phone="12", received_at=AT), origin="cli")
    with pytest.raises(ConfigError):
        request_row(KEY, Subject(), origin="cli")
    with pytest.raises(ConfigError):
        request_row(KEY, Subject(email="a@b.co", type="delete"), origin="cli")


def test_request_file_and_cli(tmp_path: Path) -> None:
    f = tmp_path / "requests.csv"
    f.write_text(
        "email,phone,customer_id,type,received_at\na@b.co,,,suppress,2026-01-01T00:00:00+00:00\n,,c_1,,\n"
    )
    subjects = forget_file(str(f))
    assert [s.type for s in subjects] == ["suppress", "erase"]
    args = build_parser().parse_args(["forget", "--email", "a@b.co", "--type", "suppress"])
    assert args.email == "a@b.co" and args.type == "suppress"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["forget", "--email", "a@b.co", "--phone", "+44"])


def test_privacy_stage_runs_after_ingest_and_before_silver() -> None:
    order = [s.name for s in pipeline_stages()]
    assert order.index("ingest") < order.index("privacy") < order.index("silver")
    stage = get_stage("privacy")
    for table in (
        "bronze/crm_contacts",
        "bronze/_quarantine",
        "silver/person_records",
        "gold/customer_profile",
        "ops/erasure_proof",
    ):
        assert stage.may_write(table), table


def test_table_predicate_uses_record_keys_ids_and_exclusive_values() -> None:
    person = Person(
        customers={"c_1"},
        records={"crm|C1"},
        member_keys={"person_records|crm|C1"},
        values={"email": {"o'neil@x.co"}},
    )
    pred = table_predicate(["source", "source_record_id", "customer_id", "email"], person)
    assert pred is not None
    assert "concat_ws('|', source, source_record_id) IN ('crm|C1')" in pred
    assert "customer_id IN ('c_1')" in pred and "o\\'neil@x.co" in pred
    assert table_predicate(["audience", "run_id"], person) is None
