"""Reading a bounded sample in plain Python: format, compression, encoding, delimiter,
header, JSON layout, XML row tag, nested paths named as bronze names them. No Spark."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdp.errors import ConfigError
from cdp.onboarding.sample import detect_delimiter, read_sample, sample_files
from cdp.sources import SourceFormat

LATIN1_CSV = "Kundennr;E-mail Address;Straße\nK1;a@x.de;Hauptstraße 1\nK2;b@x.de;Weg 2\n"


def test_a_semicolon_latin1_csv_with_odd_header_names(tmp_path: Path) -> None:
    f = tmp_path / "kunden.csv"
    f.write_bytes(LATIN1_CSV.encode("latin-1"))
    s = read_sample(f)
    assert s.format is SourceFormat.CSV and s.compression is None
    assert (s.encoding, s.bom, s.delimiter, s.header) == ("ISO-8859-1", False, ";", True)
    # Named as bronze names them: blanks made safe, letters kept.
    assert s.columns == [("Kundennr",), ("E-mail_Address",), ("Straße",)]
    assert len(s.rows) == 2 and s.rows[1][("Straße",)] == "Weg 2"


def test_gzip_csv_with_a_utf8_bom_and_bzip2(tmp_path: Path) -> None:
    body = "\ufeffid,amount\n1,2.50\n2,3.00\n"
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(body.encode("utf-8")))
    s = read_sample(tmp_path / "a.csv.gz")
    assert (s.compression, s.encoding, s.bom, s.delimiter) == ("gzip", "UTF-8", True, ",")
    assert s.columns == [("id",), ("amount",)]  # the BOM is not part of the first name
    (tmp_path / "b.csv.bz2").write_bytes(bz2.compress(b"id\tamount\n1\t2\n"))
    s = read_sample(tmp_path / "b.csv.bz2")
    assert (s.compression, s.delimiter) == ("bzip2", "\t")


def test_utf16_and_windows_1252(tmp_path: Path) -> None:
    (tmp_path / "u.csv").write_bytes("id,name\n1,Zoë\n".encode("utf-16"))
    assert read_sample(tmp_path / "u.csv").encoding == "UTF-16"
    (tmp_path / "w.csv").write_bytes("id,price\n1,5 \u20ac\n".encode("cp1252"))
    assert read_sample(tmp_path / "w.csv").encoding == "windows-1252"


def test_a_headerless_csv(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("1,a@x.com,2024-01-01\n2,b@x.com,2024-01-02\n")
    s = read_sample(tmp_path / "h.csv")
    assert s.header is False and s.columns == [("_c0",), ("_c1",), ("_c2",)]
    assert len(s.rows) == 2


def test_the_sample_is_bounded(tmp_path: Path) -> None:
    lines = ["id,v"] + [f"{i},{i}" for i in range(3000)]
    (tmp_path / "big.csv").write_text("\n".join(lines) + "\n")
    assert len(read_sample(tmp_path / "big.csv", limit=1000).rows) == 1000


def test_delimiter_falls_back_to_counting() -> None:
    assert detect_delimiter(["a|b|c", "1|2|3"])[0] == "|"


def test_nested_json_lines_and_a_json_array(tmp_path: Path) -> None:
    records = [
        {"id": 1, "customer": {"email": "a@x.com", "name": {"first": "A"}}, "items": [1, 2]},
        {"id": 2, "customer": {"email": "b@x.com", "name": {"first": "B"}}, "items": []},
    ]
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    s = read_sample(tmp_path / "e.jsonl")
    assert s.format is SourceFormat.NDJSON and not s.multiline
    assert ("customer", "name", "first") in s.columns and ("items",) in s.columns
    assert s.rows[0][("items",)] == "[1, 2]"  # arrays stay one value, as bronze keeps them

    (tmp_path / "a.json").write_text(json.dumps(records, indent=2))
    s = read_sample(tmp_path / "a.json")
    assert s.format is SourceFormat.JSON and s.multiline
    assert s.rows[1][("customer", "email")] == "b@x.com"
    # A .json file of JSON lines is NDJSON.
    (tmp_path / "l.json").write_text("\n".join(json.dumps(r) for r in records))
    assert read_sample(tmp_path / "l.json").format is SourceFormat.NDJSON


def test_xml_row_tag_and_attributes(tmp_path: Path) -> None:
    (tmp_path / "m.xml").write_text(
        "<?xml version='1.0'?><members>"
        "<member id='7'><name>Ann</name><address><city>Bonn</city></address></member>"
        "<member id='8'><name>Bob</name><address><city>Kiel</city></address></member>"
        "</members>"
    )
    s = read_sample(tmp_path / "m.xml")
    assert s.format is SourceFormat.XML and s.row_tag == "member"
    assert s.columns == [("_id",), ("name",), ("address", "city")]
    assert [r[("address", "city")] for r in s.rows] == ["Bonn", "Kiel"]


def test_parquet_nested(tmp_path: Path) -> None:
    table = pa.table({"order_id": ["o1", "o2"], "buyer": [{"email": "a@x.com"}, {"email": None}]})
    pq.write_table(table, tmp_path / "p.parquet")
    s = read_sample(tmp_path / "p.parquet")
    assert s.format is SourceFormat.PARQUET and s.encoding is None
    assert s.columns == [("order_id",), ("buyer", "email")]
    assert s.rows[1][("buyer", "email")] is None


def test_a_folder_is_sampled_file_by_file(tmp_path: Path) -> None:
    for day in ("2025-01-01", "2025-01-02"):
        (tmp_path / day).mkdir()
        (tmp_path / day / "x.csv").write_text("id\n1\n2\n")
    (tmp_path / "2025-01-01" / "_SUCCESS").write_text("")
    (tmp_path / ".hidden.csv").write_text("id\n9\n")
    assert [p.parent.name for p in sample_files(tmp_path)] == ["2025-01-01", "2025-01-02"]
    assert len(read_sample(tmp_path).rows) == 4
    with pytest.raises(ConfigError, match="no such file"):
        sample_files(tmp_path / "absent")
