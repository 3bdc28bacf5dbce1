"""``cdp source check``: a few rows through bronze, the mapping, the standardizers and the
rules; statuses per canonical field, no value shown, nothing written."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from cdp.config import CdpConfig, load_config
from cdp.onboarding.check import check_source_rows, format_check

SOURCE = """\
name: crm
kind: profile
format: csv
path: crm/*.csv
options: {header: "true", delimiter: ";"}
primary_key: [Kunden-Nr]
event_time: changed
event_time_format: "dd.MM.yyyy HH:mm"
mapping:
  source_record_id: "`Kunden-Nr`"
  email: mail
  phone: tel
  birth_date: dob
  updated_at: changed
defaults: {phone_region: DE, date_formats: ["dd.MM.yyyy"]}
"""
ROWS = (
    "Kunden-Nr;mail;tel;dob;changed\n"
    "K1;ann@example.com;030 12345678;14.03.1975;02.01.2025 10:15\n"
    "K2;not-an-address;0171 2345678;1988-11-02;03.01.2025 11:00\n"
    "K3;;12;29.07.1992;04.01.2025 12:30\n"
    "K4;zoe@example.org;;05.01.1969;yesterday\n"
    "K5;bad;line;with;too;many;fields\n"
)


def _config(env: dict[str, Path]) -> CdpConfig:
    return load_config(
        env="test",
        overrides={
            "data_root": str(env["data"]),
            "landing_root": str(env["landing"]),
            "sources_dirs": [str(env["sources"])],
        },
    )


def test_check_reports_statuses_per_field_without_values_or_writes(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    (env["sources"] / "crm.yaml").write_text(SOURCE, encoding="utf-8")
    (env["landing"] / "crm").mkdir()
    (env["landing"] / "crm" / "c.csv").write_text(ROWS, encoding="utf-8")
    config = _config(env)
    report = check_source_rows(spark, config, "crm")
    assert (report.table, report.files, report.rows, report.malformed) == (
        "silver/person_records",
        1,
        5,
        1,
    )
    by_field = {f.field: f for f in report.fields}
    assert (by_field["email"].ok, by_field["email"].invalid, by_field["email"].missing) == (2, 1, 1)
    assert "e-mail" in by_field["email"].reason
    assert (by_field["phone"].ok, by_field["phone"].invalid, by_field["phone"].missing) == (2, 1, 1)
    assert (by_field["birth_date"].ok, by_field["birth_date"].invalid) == (3, 1)
    assert (by_field["updated_at"].ok, by_field["updated_at"].invalid) == (3, 1)
    assert by_field["source_record_id"].ok == 4
    assert by_field["source_record_id"].mapped_from == "`Kunden-Nr`"
    assert "first_name" in report.not_mapped
    assert report.rules["email_valid"] == (1, False)
    lines = format_check(report)
    text = "\n".join(lines)
    assert "silver would quarantine 0 of 4 rows; nothing was written" in text
    assert "rule email_valid: 1 of 4 rows fail" in text
    for value in ("ann@example.com", "not-an-address", "030 12345678", "14.03.1975", "K1"):
        assert value not in text
    # Nothing was written under the data root.
    assert not any(env["data"].iterdir())


# An order export as a spreadsheet writes it: windows-1252 (the euro sign is byte 0x80), a
# decimal comma, midnight's time dropped from some dates, one ISO date, one line twice.
ORDERS = (
    "Bestellnr,Kunden-Nr,Datum,Betrag,Währung\r\n"
    'B-1,K-1001,04.03.2025 14:22,"1.234,56",EUR\r\n'
    'B-2,K-1001,05.03.2025 09:01,"19,99",EUR\r\n'
    'B-3,K-1002,2025-03-06,"5,00",€\r\n'
    'B-4,K-1003,07.03.2025,"-10,00",EUR\r\n'
    'B-5,K-1003,08.03.2025,"7,50",EUR\r\n'
    'B-6,K-1006,09.03.2025 18:00,"42,00",EUR\r\n'
    'B-6,K-1006,09.03.2025 18:00,"42,00",EUR\r\n'
).encode("cp1252")


def test_a_drafted_windows_1252_export_reads_every_time_and_keeps_its_order_number(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    from cdp.onboarding.draft import draft_source

    (env["landing"] / "orders").mkdir()
    (env["landing"] / "orders" / "bestellungen.csv").write_bytes(ORDERS)
    config = _config(env)
    drafted = draft_source(config, env["landing"] / "orders", "orders")
    spec = drafted.spec
    assert spec.options["encoding"] == "windows-1252"
    # The repeated line is a re-delivery, not a second order B-6.
    assert spec.primary_key == ["Bestellnr"] and spec.mapping["order_id"] == "Bestellnr"
    assert spec.event_time == "Datum"
    assert spec.event_time_format == ["dd.MM.yyyy HH:mm", "dd.MM.yyyy", "yyyy-MM-dd"]

    report = check_source_rows(spark, config, "orders")
    by_field = {f.field: f for f in report.fields}
    assert (report.rows, report.malformed) == (7, 0)
    assert (by_field["order_time"].ok, by_field["order_time"].invalid) == (7, 0)
    assert (by_field["currency"].ok, by_field["currency"].invalid) == (7, 0)  # "€" read as €
    assert (by_field["amount"].ok, by_field["amount"].invalid) == (7, 0)
