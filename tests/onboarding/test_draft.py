"""``cdp source draft``: the proposed kind, keys and mapping with their evidence, and a file
that the project's own loader accepts. No Spark but to evaluate one drafted expression; no
sampled value is ever printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp import cli
from cdp.config import CdpConfig, load_config
from cdp.errors import ConfigError
from cdp.onboarding.draft import draft_source, summary_lines
from cdp.sources import SourceKind, SourceSpec, load_sources

CUSTOMERS = (
    "Kundennummer;Given name;Surname;E-mail Address;Telefon;Date of birth;PLZ;Land;Geändert\n"
    "K1;Jürgen;Müller;j.mueller@example.de;030 12345678;14.03.1975;10115;Deutschland;"
    "02.01.2025 10:15\n"
    "K2;Anna;Schmidt;anna@example.com;0171 2345678;02.11.1988;80331;Deutschland;"
    "03.01.2025 11:00\n"
    "K3;Zoë;Weiß;zoe@example.org;040 3456789;29.07.1992;22763;Deutschland;04.01.2025 12:30\n"
    "K4;Björn;Krüger;kein;0221 4567890;05.01.1969;50667;Deutschland;05.01.2025 08:05\n"
)
SECRETS = ("Jürgen", "Müller", "anna@example.com", "0171", "14.03.1975", "10115")


def _config(tmp: Path) -> CdpConfig:
    for d in ("landing", "sources"):
        (tmp / d).mkdir(exist_ok=True)
    return load_config(
        overrides={
            "data_root": str(tmp / "data"),
            "landing_root": str(tmp / "landing"),
            "sources_dirs": [str(tmp / "sources")],
        },
        environ={},
    )


def _land(tmp: Path, folder: str, name: str, data: bytes) -> Path:
    target = tmp / "landing" / folder
    target.mkdir(parents=True, exist_ok=True)
    (target / name).write_bytes(data)
    return target


def _draft_each(tmp: Path, files: dict[str, str]) -> dict[str, SourceSpec]:
    """Each text landed in a folder of its own and drafted as a source of that name; the
    declarations as the project's loader reads them back, by name."""
    config = _config(tmp)
    for name, text in files.items():
        draft_source(config, _land(tmp, name, f"{name}.csv", text.encode()), name)
    return {s.name: s for s in load_sources(config)}


# A person register in the layout of the FEBRL record-linkage benchmark: a record id, the
# house number apart from the street, a suburb, an id number; duplicates of one person.
REGISTER = (
    "rec_id, given_name, surname, street_number, address_1, address_2, suburb, postcode, "
    "state, date_of_birth, soc_sec_id\n"
    "rec-1496-org, mitchell, green, 7, wallaby place, delmar, cleveland, 2119, sa, 19560409, "
    "1804974\n"
    "rec-1496-dup-0, mitchell, geen, 7, wallaby place, delmar, cleveland, 2119, sa, 19560409, "
    "1804974\n"
    "rec-552-dup-3, harley, mccarthy, 177, pridhamstreet, milton, marsden, 3165, nsw, 19080419, "
    "6089216\n"
    "rec-988-dup-1, madeline, mason, 54, hoseason street, lakefront, lindisfarne, 3212, vic, "
    "19790601, 6089003\n"
)


def test_a_register_keeps_its_record_id_apart_and_maps_street_suburb_and_id_number(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    folder = _land(tmp_path, "register", "r.csv", REGISTER.encode())
    drafted = draft_source(config, folder, "register")
    (spec,) = load_sources(config)
    assert spec.kind is SourceKind.PROFILE and spec.primary_key == ["rec_id"]
    # The record id is only the record's: as a CRM id its duplicates could never merge.
    assert spec.identifiers == ["national_id"]
    assert spec.mapping == {
        "source_record_id": "rec_id",
        "first_name": "given_name",
        "last_name": "surname",
        "birth_date": "date_of_birth",
        "address_line1": "concat_ws(' ', street_number, address_1)",
        "city": "suburb",
        "postcode": "postcode",
        "national_id": "soc_sec_id",
    }
    assert spec.defaults.date_formats == ["yyyyMMdd"]
    lines = {line.split(":")[0].strip(): line for line in drafted.text.splitlines()}
    assert "are house numbers" in lines["address_line1"]
    assert "a custom identifier" in lines["national_id"]


# A register of people born long ago (the layout of Splink's historical_50k): birth dates
# from the 17th and 19th centuries, one mistyped beyond any calendar, one missing.
HISTORICAL = (
    "unique_id,cluster,first_name,surname,dob,birth_place,postcode_fake,gender\n"
    "Q1-1,Q1,thomas,chudleigh,1630-08-01,devon,tq13 8df,male\n"
    "Q1-2,Q1,tom,chudleigh,1630-08-01,west devon,tq13 8hu,\n"
    "Q2-1,Q2,walter,bryant,1813-01-01,sheffield,s6 6ab,male\n"
    "Q2-2,Q2,walter,bryant,1813-21-01,sheffield,,male\n"
    "Q3-1,Q3,arthur,englefield,,,ts19 0sh,male\n"
    "Q4-1,Q4,mary,stanning,1855-03-12,lincoln,pe23 5au,female\n"
)


def test_birth_dates_before_1900_are_mapped_with_a_floor_that_keeps_them(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    folder = _land(tmp_path, "people", "p.csv", HISTORICAL.encode())
    drafted = draft_source(config, folder, "people")
    (spec,) = load_sources(config)
    assert spec.mapping["birth_date"] == "dob"
    assert spec.defaults.date_formats == ["yyyy-MM-dd"]
    # Silver's floor (1900) would call every one of them implausible.
    assert str(spec.defaults.birth_date_min) == "1600-01-01"
    lines = {line.split(":")[0].strip(): line for line in drafted.text.splitlines()}
    assert "80% of 5 sampled values are dates before 1900" in lines["birth_date_min"]
    assert "1630" not in drafted.text  # a count and a century, never a value


def test_a_birth_place_is_mapped_as_one_and_never_as_where_the_person_lives(
    tmp_path: Path,
) -> None:
    # German headers: Geburtsort (birth place) beside Wohnort (the town they live in).
    kunden = (
        "Nr;Vorname;Nachname;Geburtsort;Wohnort\n"
        "1;Jürgen;Müller;Bremen;Berlin\n2;Anna;Schmidt;Köln;München\n"
        "3;Zoë;Weiß;Hamburg;Hamburg\n4;Björn;Krüger;Kiel;Köln\n"
    )
    # "Birth city" carries the city word: still the birth place, and no city at all.
    born = "id,first,last,birth_city\n1,Ann,Lee,Leeds\n2,Bob,Ray,York\n3,Cy,Orr,Bath\n"
    specs = _draft_each(tmp_path, {"people": HISTORICAL, "kunden": kunden, "born": born})
    assert specs["people"].mapping["birth_place"] == "birth_place"
    assert "city" not in specs["people"].mapping
    assert specs["kunden"].mapping["birth_place"] == "Geburtsort"
    assert specs["kunden"].mapping["city"] == "Wohnort"
    assert specs["born"].mapping["birth_place"] == "birth_city"
    assert "city" not in specs["born"].mapping


# A register in the layout of the R RecordLinkage package's RLdata sets: the birth date as
# year, month and day columns; a "birth_year"-style header in another file, a year alone.
RLDATA = (
    "fname_c1,fname_c2,lname_c1,lname_c2,by,bm,bd\n"
    "CARSTEN,,MEIER,,1949,7,22\nGERD,,BAUER,,1968,7,27\nROBERT,,HARTMANN,,1930,4,27\n"
    "STEFAN,,WOLFF,,1957,9,2\nRALF,,KRUEGER,,1949,1,13\nCARSTEN,,MEIER,,1949,7,2\n"
)


def test_a_birth_date_in_year_month_and_day_columns_is_one_iso_date(
    tmp_path: Path, spark: SparkSession
) -> None:
    parts = (
        "id;Vorname;Nachname;Geburtsjahr;Geburtsmonat;Geburtstag\n"
        "1;Anna;Lee;1980;02;29\n2;Bob;Ray;1975;12;01\n3;Cy;Orr;1990.0;7.0;4.0\n4;Di;Fox;1961;;9\n"
    )
    # A year alone is no birth date: the canonical birth_year.
    alone = "id,first,last,birth_year\n1,Ann,Lee,1980\n2,Bob,Ray,1975\n3,Cy,Orr,1990\n"
    specs = _draft_each(tmp_path, {"rl": RLDATA, "de": parts, "yr": alone})
    rl = specs["rl"].mapping["birth_date"]
    assert all(f"try_cast({c} AS DECIMAL(10,2))" in rl for c in ("`by`", "bm", "bd"))
    assert "birth_date" not in specs["yr"].mapping
    assert specs["yr"].mapping["birth_year"] == "birth_year"
    rows = [
        ("1980", "02", "29"),
        ("1975", "12", "01"),
        ("1990.0", "7.0", "4.0"),
        ("1961", None, "9"),
    ]
    df = spark.createDataFrame(rows, "Geburtsjahr string, Geburtsmonat string, Geburtstag string")
    got = [r[0] for r in df.selectExpr(specs["de"].mapping["birth_date"]).collect()]
    # Silver checks the dates as it checks any other (1980-02-29 exists; a bad one is flagged).
    assert got == ["1980-02-29", "1975-12-01", "1990-07-04", None]


# A US voter file (the North Carolina register's layout, a classic of record linkage): a
# state code and an ethnicity code of two letters each ("NC", "NL": New Caledonia and the
# Netherlands by ISO), a name suffix and a middle name, zip codes unique in a small sample.
VOTERS = (
    "ncid,last_name,first_name,midl_name,name_sfx_cd,res_street_address,res_city_desc,"
    "state_cd,zip_code,race_code,ethnic_code,gender_code,birth_year\n"
    "AA1001,SMITH,JOHN,ALLEN,,123 MAIN ST,RALEIGH,NC,27601,W,NL,M,1979\n"
    "AA1002,JOHNSON,MARY,ELIZABETH,,45 OAK AVE,DURHAM,NC,27701,B,NL,F,1962\n"
    "AA1003,WILLIAMS,ROBERT,,JR,9 PINE RD,CARY,NC,27511,W,NL,M,1991\n"
    "AA1004,BROWN,PATRICIA,ANN,,77 ELM ST,RALEIGH,NC,27603,W,HL,F,1973\n"
    "AA1005,DAVIS,JAMES,LEE,,300 CEDAR LN,APEX,NC,27502,B,NL,M,1996\n"
)


def test_a_voter_file_keeps_its_id_its_zip_codes_and_no_country_from_two_letter_codes(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    drafted = draft_source(config, _land(tmp_path, "nc", "voters.csv", VOTERS.encode()), "nc")
    (spec,) = load_sources(config)
    assert spec.primary_key == ["ncid"]  # not the zip codes, unique in five rows
    assert spec.mapping["postcode"] == "zip_code"
    assert spec.mapping["first_name"] == "first_name"
    assert spec.mapping["last_name"] == "last_name"
    assert "country" not in spec.mapping
    assert "full_name" not in spec.mapping  # "name_sfx_cd" holds "JR"
    assert spec.mapping["birth_year"] == "birth_year"  # a year alone: no birth date
    assert "birth_date" not in spec.mapping
    assert "phone_region" not in drafted.text  # no country guessed from "NL" or "NC"
    assert "midl_name" in drafted.text.splitlines()[-1]  # kept in attributes


def test_a_full_name_header_is_the_full_name_not_a_last_name(tmp_path: Path) -> None:
    # "Full_Name" joined is "fullname", which holds "lname": a surname's abbreviation counts
    # as a whole word only.
    crm = (
        "Customer ID,Full Name,E-Mail\n"
        'C-1,"Smith, John",john.smith@example.com\nC-2,Mary O\'Brien,mary@example.co.uk\n'
        "C-3,Dr. Ahmed Khan,akhan@example.org\nC-4,Zoe Weiss,zoe@example.de\n"
    )
    register = "lname_c1,fname_c1,x\nMEIER,CARSTEN,1\nBAUER,GERD,2\nWOLFF,STEFAN,3\n"
    specs = _draft_each(tmp_path, {"crm": crm, "register": register})
    assert specs["crm"].mapping["full_name"] == "Full_Name"
    assert not {"first_name", "last_name"} & set(specs["crm"].mapping)
    assert specs["register"].mapping["last_name"] == "lname_c1"
    assert specs["register"].mapping["first_name"] == "fname_c1"


def test_a_modern_source_keeps_silver_s_birth_date_floor(tmp_path: Path) -> None:
    config = _config(tmp_path)
    draft_source(config, _land(tmp_path, "crm", "c.csv", CUSTOMERS.encode()), "crm")
    (spec,) = load_sources(config)
    assert spec.mapping["birth_date"] == "Date_of_birth"
    assert str(spec.defaults.birth_date_min) == "1900-01-01"


# Line items of a retail export (the UCI "Online Retail" layout): an invoice per order over
# several rows, a unit price and a quantity, unpadded US dates, cancellations, no customer id
# on some rows.
LINE_ITEMS = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom\n"
    "536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850,United Kingdom\n"
    "536366,22633,HAND WARMER UNION JACK,6,12/13/2010 10:05,1.85,,United Kingdom\n"
    "C536379,D,Discount,-1,12/21/2010 9:41,27.5,14527,United Kingdom\n"
)


def test_line_items_get_their_amount_from_quantity_and_unit_price(tmp_path: Path) -> None:
    config = _config(tmp_path)
    folder = _land(tmp_path, "retail", "Online Retail.csv", LINE_ITEMS.encode())
    drafted = draft_source(config, folder, "retail")
    (spec,) = load_sources(config)
    assert spec.kind is SourceKind.TRANSACTION
    assert spec.event_time == "InvoiceDate" and spec.event_time_format == "M/d/yyyy H:mm"
    assert spec.mapping["order_id"] == "InvoiceNo"
    assert spec.mapping["customer_id"] == "CustomerID"
    # The unit price alone would make every line worth one unit.
    assert spec.mapping["amount"] == (
        "try_cast(Quantity AS decimal(18,4)) * try_cast(UnitPrice AS decimal(18,4))"
    )
    line = next(x for x in drafted.text.splitlines() if x.strip().startswith("amount:"))
    assert "is a unit price" in line and "'Quantity' a quantity" in line


def test_a_basket_is_the_order_and_a_household_the_customer(tmp_path: Path) -> None:
    # Line items in the layout of a retailer's loyalty panel (dunnhumby's "The Complete
    # Journey"): a basket per shopping trip, a household per loyalty card.
    header = "household_key,BASKET_ID,DAY,PRODUCT_ID,QUANTITY,SALES_VALUE,STORE_ID\n"
    rows = [
        f"{hh},{26984851472 + b},{1 + b // 3},{1004906 + i % 4},1,{('1.39', '0.99', '2.5')[i]},364\n"
        for b, hh in enumerate([2375, 1364, 1130, 98, 2375, 1228])
        for i in range(3)
    ]
    config = _config(tmp_path)
    draft_source(config, _land(tmp_path, "panel", "t.csv", (header + "".join(rows)).encode()), "tx")
    (spec,) = load_sources(config)
    assert spec.kind is SourceKind.TRANSACTION
    assert spec.mapping["order_id"] == "BASKET_ID"
    assert spec.mapping["customer_id"] == "household_key"
    assert spec.mapping["amount"] == "SALES_VALUE"


def test_short_dates_with_two_digit_years_are_order_times_but_never_birth_dates(
    tmp_path: Path, spark: SparkSession
) -> None:
    # A spreadsheet's short dates ("12/1/10 8:26"); a 1990s log ("1/5/98") stays unread:
    # Spark would take 98 for 2098.
    orders = "order,customer,placed,total\nA1,C1,12/1/10 8:26,2.55\nA2,C2,12/13/10 10:05,3.10\n"
    orders += "A3,C1,1/4/11 9:41,27.50\n"
    people = "id,first,last,dob\n1,Ann,Lee,12/05/01\n2,Bob,Ray,01/11/03\n3,Cy,Orr,30/01/05\n"
    old = "order,customer,placed,total\nB1,C1,1/5/98 8:26,2.55\nB2,C2,3/7/97 10:05,3.10\n"
    specs = _draft_each(tmp_path, {"orders": orders, "people": people, "old": old})
    assert specs["orders"].event_time == "placed"
    assert specs["orders"].event_time_format == "M/d/yy H:mm"
    assert "birth_date" not in specs["people"].mapping
    assert specs["old"].event_time is None
    got = spark.sql("SELECT try_to_timestamp('12/13/10 10:05', 'M/d/yy H:mm')").first()
    assert got is not None and str(got[0]) == "2010-12-13 10:05:00"


def test_dates_written_with_month_names_are_read_by_silver_as_drafted(
    tmp_path: Path, spark: SparkSession
) -> None:
    people = (
        "id,first,last,date_of_birth\n1,Ann,Lee,05-MAR-1980\n2,Bob,Ray,17-Nov-1975\n"
        "3,Cy,Orr,2-Jan-1990\n4,Di,Fox,30-Jun-1961\n"
    )
    letters = 'id,first,last,born\n1,Ann,Lee,"March 5, 1980"\n2,Bob,Ray,"June 17, 1975"\n'
    specs = _draft_each(tmp_path, {"people": people, "letters": letters})
    assert specs["people"].mapping["birth_date"] == "date_of_birth"
    formats = specs["people"].defaults.date_formats or []
    assert specs["letters"].defaults.date_formats == ["MMMM d, yyyy"]
    df = spark.createDataFrame([("05-MAR-1980",), ("2-Jan-1990",)], "v string")
    got = df.select(F.coalesce(*[F.try_to_date("v", f) for f in formats])).collect()
    assert [str(r[0]) for r in got] == ["1980-03-05", "1990-01-02"]


def test_a_postcode_is_taken_out_of_a_one_line_address(tmp_path: Path, spark: SparkSession) -> None:
    uk = (
        'id,name,email,address\n1,Ann Lee,ann@example.com,"12 High Street, Leeds LS1 4AP"\n'
        '2,Bob Ray,bob@example.com,"3 Mill Lane, York yo1 7hh"\n'
        '3,Cy Orr,cy@example.com,"Flat 2, 45 Park Road, Manchester M14 5RL, UK"\n'
    )
    us = (
        'id,name,email,street_address\n1,Ann Lee,ann@example.com,"12 Main St, Springfield, IL '
        '62704"\n2,Bob Ray,bob@example.com,"300 Cedar Ln, Apex, NC 27502-1234"\n'
    )
    specs = _draft_each(tmp_path, {"uk": uk, "us": us})
    for name, column, want in [
        ("uk", "address", ["LS1 4AP", "YO1 7HH", "M14 5RL"]),
        ("us", "street_address", ["62704", "27502"]),
    ]:
        values = {"uk": uk, "us": us}[name].splitlines()[1:]
        rows = [(line.split(",", 3)[3].strip('"'),) for line in values]
        df = spark.createDataFrame(rows, f"{column} string")
        got = [r[0] for r in df.selectExpr(specs[name].mapping["postcode"]).collect()]
        assert got == want


def test_numbers_written_the_north_american_way_set_the_phone_region(tmp_path: Path) -> None:
    # No country column and no international number: "(919) 555-0143" is as valid a British
    # number as an American one (0919 ...), but only North America writes it so.
    us = (
        "First Name,Last Name,Phone Number\nJohn,Smith,(919) 555-0143\n"
        "Mary,Johnson,919-555-0178\nRobert,Williams,(704) 555-0199\nAnn,Lee,336.555.0111\n"
    )
    uk = "First Name,Last Name,Mobile\nJohn,Smith,07911 123456\nMary,Jones,07912 345678\n"
    specs = _draft_each(tmp_path, {"us": us, "uk": uk})
    assert specs["us"].defaults.phone_region == "US"
    assert specs["uk"].mapping["phone"] == "Mobile"
    assert specs["uk"].defaults.phone_region in (None, "GB")


def test_a_workbook_split_into_yearly_sheets_is_drafted_as_one_xlsx_source(
    tmp_path: Path,
) -> None:
    from datetime import datetime
    from io import BytesIO

    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    header = ["Invoice", "StockCode", "Quantity", "InvoiceDate", "Price", "Customer ID"]
    for title, year in (("Year 2009-2010", 2009), ("Year 2010-2011", 2010)):
        ws = book.create_sheet(title)
        ws.append(header)
        for i in range(6):
            ws.append(
                [f"{year}{i:03d}", f"2{i}000", 6, datetime(year, 12, 1 + i, 8, 26), 2.55, 17850 + i]
            )
    buf = BytesIO()
    book.save(buf)
    config = _config(tmp_path)
    folder = _land(tmp_path, "retail", "online_retail_II.xlsx", buf.getvalue())
    drafted = draft_source(config, folder, "retail")
    (spec,) = load_sources(config)
    assert spec.format.value == "xlsx" and spec.path == "retail/*.xlsx"
    assert spec.options == {"sheet": "*"}
    assert spec.kind is SourceKind.TRANSACTION
    assert spec.event_time == "InvoiceDate" and spec.event_time_format == "yyyy-MM-dd HH:mm:ss"
    assert spec.mapping["customer_id"] == "Customer_ID" and spec.mapping["order_id"] == "Invoice"
    assert "2 of 2 sheets share the first sheet's header" in drafted.text


def test_a_customer_csv_becomes_a_profile_source_that_loads(tmp_path: Path) -> None:
    config = _config(tmp_path)
    folder = _land(tmp_path, "kunden", "k.csv", CUSTOMERS.encode("latin-1"))
    drafted = draft_source(config, folder, "kunden")
    assert drafted.out == tmp_path / "sources" / "kunden.yaml"
    (spec,) = load_sources(config)  # the project's loader and its checks accept it
    assert spec.kind is SourceKind.PROFILE and spec.path == "kunden/*.csv"
    assert spec.options == {"header": "true", "delimiter": ";", "encoding": "ISO-8859-1"}
    assert spec.primary_key == ["Kundennummer"]
    assert spec.event_time == "Geändert" and spec.event_time_format == "dd.MM.yyyy HH:mm"
    assert spec.mapping == {
        "source_record_id": "Kundennummer",
        "customer_id": "Kundennummer",
        "email": "`E-mail_Address`",
        "phone": "Telefon",
        "first_name": "Given_name",
        "last_name": "Surname",
        "birth_date": "Date_of_birth",
        "postcode": "PLZ",
        "country": "Land",
        "updated_at": "`Geändert`",
    }
    assert spec.defaults.phone_region == "DE" and spec.defaults.date_formats == ["dd.MM.yyyy"]
    # Every proposal carries its evidence as a comment.
    lines = {line.split(":")[0].strip(): line for line in drafted.text.splitlines()}
    assert "# 75% of 4 sampled values parse as e-mail" in lines["email"]
    assert "person columns" in lines["kind"]
    assert "all 4 sampled values present and unique" in lines["primary_key"]
    assert "are dates written dd.MM.yyyy" in lines["birth_date"]
    assert "the country most sampled rows name" in lines["phone_region"]
    # Names and counts only: no sampled value in the file or on the console.
    shown = drafted.text + "\n".join(summary_lines(drafted))
    assert not [s for s in SECRETS if s in shown]


def test_nested_json_orders_become_a_transaction_source(tmp_path: Path) -> None:
    config = _config(tmp_path)
    records = [
        {
            "order": {"id": f"W-{i}", "placed": f"2025-01-0{i}T10:00:00Z", "total": 10.5 + i},
            "customer": {"email": f"p{i}@example.com", "name": {"first": "Ann", "last": "Lee"}},
            "currency": "EUR",
        }
        for i in range(1, 6)
    ]
    folder = _land(tmp_path, "shop", "o.jsonl", "\n".join(map(json.dumps, records)).encode())
    drafted = draft_source(config, folder / "o.jsonl", "shop")
    (spec,) = load_sources(config)
    assert spec.kind is SourceKind.TRANSACTION and spec.format.value == "ndjson"
    assert spec.path == "shop/*.jsonl" and spec.primary_key == ["order.id"]
    assert spec.event_time == "order.placed"
    assert spec.mapping["order_id"] == "`order`.id"  # a keyword is quoted
    assert spec.mapping["email"] == "customer.email"
    assert spec.mapping["first_name"] == "customer.name.first"
    assert spec.mapping["amount"] == "`order`.total"
    assert "an amount column ('order.total')" in drafted.text


def test_no_unique_column_hashes_the_record_and_outside_files_get_a_note(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    outside = tmp_path / "export"
    outside.mkdir()
    (outside / "e.csv").write_text("email,visited\na@x.com,2025-01-01\na@x.com,2025-01-02\n")
    drafted = draft_source(config, outside, "visits", out=tmp_path / "v.yaml")
    data = yaml.safe_load(drafted.text)
    assert data["path"] == "visits/*.csv"
    assert data["mapping"]["source_record_id"] == "xxhash64(email, visited)"
    assert "primary_key" not in data
    assert drafted.note and "outside the landing root" in drafted.note
    with pytest.raises(ConfigError, match="exists: pass --force"):
        draft_source(config, outside, "visits", out=tmp_path / "v.yaml")
    draft_source(config, outside, "visits", out=tmp_path / "v.yaml", force=True)
    with pytest.raises(ConfigError, match="lower_snake_case"):
        draft_source(config, outside, "Visits", out=tmp_path / "w.yaml")


def test_cli_source_draft_in_a_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("CDP_CONF_DIR", "CDP_ENV", "CDP_DATA_ROOT", "CDP_LANDING_ROOT"):
        monkeypatch.delenv(var, raising=False)
    site = tmp_path / "acme"
    assert cli.main(["init", str(site)]) == 0
    monkeypatch.chdir(site)
    landing = site / "data" / "landing" / "kunden"
    landing.mkdir(parents=True)
    (landing / "k.csv").write_bytes(CUSTOMERS.encode("latin-1"))
    capsys.readouterr()
    assert cli.main(["source", "draft", str(landing), "--name", "kunden"]) == 0
    out = capsys.readouterr()
    assert (site / "conf" / "sources" / "kunden.yaml").exists()
    assert "wrote" in out.out and "kind: profile" in out.err
    assert not [s for s in SECRETS if s in out.out + out.err]
    assert cli.main(["sources"]) == 0
    assert "source kunden" in capsys.readouterr().out
