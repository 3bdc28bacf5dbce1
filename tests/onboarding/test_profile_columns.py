"""What a column's values and header say: detectors, date patterns, region. No Spark."""

from __future__ import annotations

from pathlib import Path

from cdp.onboarding.profile_columns import ColumnProfile, header_tokens, profile_sample
from cdp.onboarding.sample import Sample
from cdp.sources import SourceFormat


def _profile(columns: dict[str, list[str | None]]) -> dict[str, ColumnProfile]:
    names = list(columns)
    n = len(next(iter(columns.values())))
    rows = [{(c,): columns[c][i] for c in names} for i in range(n)]
    sample = Sample(format=SourceFormat.CSV, files=[Path("x.csv")], columns=[(c,) for c in names])
    sample.rows = rows
    return {p.name: p for p in profile_sample(sample).columns}


def test_value_detectors() -> None:
    p = _profile(
        {
            "mail": ["a@x.com", "B@Y.DE", "nope", None],
            "tel": ["+44 20 7946 0958", "+49 30 12345678", "12", ""],
            "land": ["Deutschland", "UK", "France", "DE"],
            "ccy": ["EUR", "€", "GBP", "usd"],
        }
    )
    assert (p["mail"].present, p["mail"].matches["email"]) == (3, 2)
    assert p["tel"].matches["phone"] == 2 and p["tel"].phone_regions == {"GB": 1, "DE": 1}
    assert p["land"].share("country") == 1.0
    assert p["ccy"].share("currency") == 1.0


def test_date_patterns_and_day_month_order() -> None:
    p = _profile(
        {
            "dmy": ["13/01/1990", "02/03/1985", "28/12/2001"],
            "mdy": ["01/13/1990", "03/02/1985", "12/28/2001"],
            "dots": ["14.03.1975", "01.11.1988", "29.07.1992"],
            "iso_ts": ["2025-01-01T10:00:00Z", "2025-02-01T11:30:00+01:00", "2025-03-01T09:00:00Z"],
            "ts": ["2024-01-01 09:00:00", "2024-02-04 09:13:00", "2024-12-31 23:59:59"],
        }
    )
    assert p["dmy"].date_pattern and p["dmy"].date_pattern.spark == "dd/MM/yyyy"
    assert p["mdy"].date_pattern and p["mdy"].date_pattern.spark == "MM/dd/yyyy"
    assert p["dots"].date_pattern and p["dots"].date_pattern.spark == "dd.MM.yyyy"
    assert p["iso_ts"].date_pattern and p["iso_ts"].date_pattern.spark == "yyyy-MM-dd'T'HH:mm:ssXXX"
    assert p["ts"].date_pattern and p["ts"].date_pattern.has_time


def test_amounts_ids_and_the_region_for_national_numbers() -> None:
    p = _profile(
        {
            "betrag": ["12,50", "3,99", "1.234,00"],
            "nr": ["K1", "K2", "K3"],
            "telefon": ["030 12345678", "0171 2345678", "040 3456789"],
            "land": ["Deutschland", "Deutschland", "DE"],
        }
    )
    assert p["betrag"].share("amount") == 1.0 and p["betrag"].decimal_comma
    assert p["nr"].unique and p["nr"].share("id") == 1.0
    # Read as German numbers because the rows name Germany.
    assert p["telefon"].share("phone") == 1.0


def test_header_tokens_fold_accents_and_split_words() -> None:
    words, joined = header_tokens(("customer", "E-mail_Address"))
    assert {"customer", "e", "mail", "address"} <= words and "email" in joined
    assert header_tokens(("Straße",))[0] == {"strasse"}
    assert header_tokens(("givenName",))[0] == {"given", "name"}


def test_a_column_that_writes_dates_several_ways_gets_each_way_once() -> None:
    p = _profile(
        {
            # A spreadsheet export: midnight's time dropped, one ISO date typed by hand.
            "datum": [
                "04.03.2025 14:22",
                "05.03.2025 09:01",
                "2025-03-06",
                "07.03.2025",
                "08.03.2025",
                "09.03.2025 18:00",
            ],
            # Day or month first cannot be told: one reading, never both.
            "slashes": ["01/02/2024", "03/04/2024", "05/06/2024", None, None, None],
            # "9:05" fits H:mm only, "14:22" fits HH:mm and H:mm: one of them reads both.
            "clock": ["2024-01-01 9:05", "2024-01-02 14:22", "2024-01-03 10:00", None, None, ""],
        }
    )
    datum = p["datum"]
    assert [d.spark for d in datum.date_patterns] == [
        "dd.MM.yyyy HH:mm",
        "dd.MM.yyyy",
        "yyyy-MM-dd",
    ]
    assert datum.date_pattern == datum.date_patterns[0]
    assert datum.share("date") == 1.0
    assert [d.spark for d in p["slashes"].date_patterns] == ["dd/MM/yyyy"]
    assert [d.spark for d in p["clock"].date_patterns] == ["yyyy-MM-dd H:mm"]
    assert p["clock"].share("date") == 1.0


def test_an_exactly_repeated_row_does_not_spoil_a_key() -> None:
    p = _profile(
        {
            "order": ["B-1", "B-2", "B-2", "B-3"],
            "amount": ["1,00", "2,00", "2,00", "3,00"],
            "customer": ["K1", "K2", "K2", "K2"],
        }
    )
    assert p["order"].key_unique and not p["order"].unique
    assert not p["customer"].key_unique
    changed = _profile({"order": ["B-1", "B-1"], "amount": ["1,00", "1,50"]})
    assert not changed["order"].key_unique  # two versions of B-1: not a key of the sample


def test_epoch_counts_in_a_time_column() -> None:
    p = _profile(
        {
            "ts": ["1741100000000", "1741103600000", "1741107200000"],
            "created": ["1741100000", "1741103600", "1741107200"],
            "order_no": ["1000000001", "1000000002", "999"],  # ids, and 1000000001 is 2001
        }
    )
    assert p["ts"].epoch_format == "epoch_millis" and p["ts"].date_pattern is None
    assert p["created"].epoch_format == "epoch_seconds"
    assert p["order_no"].epoch_format is None  # a third of them is no count


def test_a_header_over_empty_columns_is_still_a_header() -> None:
    from cdp.onboarding.sample import detect_header

    data = [["1741100000000", "page_view", "a@example.com", "/p/1", "", ""]]
    assert detect_header(["ts", "event", "user_email", "page ", "", ""], data)[0]
    assert not detect_header(["1741100000000", "page_view", "a@example.com", "", "", ""], data)[0]
    # A headerless file of names, gaps in its first row like in every other: no header.
    names = [["Anna", "Schmidt", "", "Berlin"], ["Lena", "", "Fischer", "Hamburg"]]
    assert not detect_header(["Jürgen", "Müller", "", "Köln"], names)[0]
    assert detect_header(["first", "last", "city"], names)[0]
