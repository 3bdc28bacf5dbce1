"""Excel workbooks (``cdp.bronze.spreadsheet``): cells as text, sheets, and a workbook through
the ingest stage (rows under their sheet's header, Excel row numbers as lineage, a stray cell
quarantined with its row, a file that is no workbook set aside)."""

from __future__ import annotations

import io
from datetime import date, datetime, time
from pathlib import Path

import pytest
from landing_helpers import declare, ingest, make_config, write
from openpyxl import Workbook
from pyspark.sql import SparkSession

from cdp.bronze.spreadsheet import SheetNotFound, cell_text, selected_sheets, sheet_rows, sheets
from cdp.bronze.tables import QUARANTINE_TABLE
from cdp.storage import open_store

HEADER = ["Invoice", "InvoiceDate", "Price", "Customer ID"]


def _workbook(*sheets_: tuple[str, list[list[object]]]) -> bytes:
    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets_:
        ws = book.create_sheet(title)
        for row in rows:
            ws.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def test_cells_read_as_a_person_sees_them() -> None:
    assert cell_text(17850) == "17850" and cell_text(17850.0) == "17850"
    assert cell_text(2.55) == "2.55" and cell_text(-12) == "-12"
    assert cell_text(datetime(2010, 12, 1, 8, 26)) == "2010-12-01 08:26:00"
    assert cell_text(datetime(2010, 12, 1)) == "2010-12-01 00:00:00"
    assert cell_text(date(1980, 2, 29)) == "1980-02-29" and cell_text(time(9, 5)) == "09:05:00"
    assert cell_text(True) == "true" and cell_text(None) is None and cell_text("  ") is None
    assert cell_text("#N/A") == "#N/A"  # an error cell is a value silver rejects, not a gap


def test_sheets_are_chosen_by_name_position_or_all() -> None:
    names = ["Year 2009-2010", "Year 2010-2011"]
    assert selected_sheets(names, None) == [0] and selected_sheets(names, "*") == [0, 1]
    assert selected_sheets(names, "year 2010-2011") == [1] and selected_sheets(names, "1") == [1]
    with pytest.raises(SheetNotFound, match="Year 2009-2010"):
        selected_sheets(names, "Kunden")


def test_rows_under_each_sheets_header_and_stray_cells_kept_whole() -> None:
    content = _workbook(
        (
            "2009",
            [
                [],  # a blank line above the header
                HEADER,
                ["489434", datetime(2009, 12, 1, 7, 45), 6.95, 13085],
                [None, None, None, None],
                ["C489449", datetime(2009, 12, 1, 10, 33), 2.95, 16321, None, "stray"],
                ["489435", datetime(2009, 12, 1, 7, 46), 1.25],  # no customer: shorter row
            ],
        ),
        ("notes", [["Comment"], ["exported by hand"]]),
    )
    found = sheets(content, {"sheet": "*"})
    assert [(s.name, s.columns, s.header_row) for s in found] == [
        ("2009", tuple(HEADER), 2),
        ("notes", ("Comment",), 1),
    ]
    rows = list(sheet_rows(content, {"sheet": "*"}, tuple(HEADER)))
    assert rows == [
        (0, 3, ["489434", "2009-12-01 07:45:00", "6.95", "13085"], None),
        (
            0,
            5,
            ["C489449", "2009-12-01 10:33:00", "2.95", "16321"],
            '["C489449", "2009-12-01 10:33:00", "2.95", "16321", null, "stray"]',
        ),
        (0, 6, ["489435", "2009-12-01 07:46:00", "1.25", None], None),
    ]
    headerless = sheets(content, {"header": "false"})
    assert headerless[0].columns == ("_c0", "_c1", "_c2", "_c3") and headerless[0].header_row == 0


def test_a_workbook_lands_sheet_by_sheet_and_a_broken_one_is_set_aside(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    landing, sources = env["landing"], env["sources"]
    write(
        landing / "retail/online_retail_II.xlsx",
        _workbook(
            (
                "Year 2009-2010",
                [
                    HEADER,
                    ["489434", datetime(2009, 12, 1, 7, 45), 6.95, 13085],
                    ["C489449", datetime(2009, 12, 1, 10, 33), 2.95, 16321, "stray"],
                ],
            ),
            ("Year 2010-2011", [HEADER, [536365, datetime(2010, 12, 1, 8, 26), 2.55, 17850.0]]),
        ),
    )
    write(landing / "retail/renamed.xlsx", b"Invoice,Price\n1,2.5\n")  # a CSV named .xlsx
    declare(
        sources,
        "retail",
        kind="transaction",
        format="xlsx",
        path="retail/*.xlsx",
        options={"sheet": "*"},
    )
    config = make_config(env)
    result = ingest(spark, config)
    store = open_store(spark, config)

    assert result.status == "partial"  # one file set aside
    landed = sorted(
        (r.Invoice, r.InvoiceDate, r.Price, r.Customer_ID, r._file_offset, r._row_number)
        for r in store.read("bronze/retail").collect()
    )
    assert landed == [
        ("489434", "2009-12-01 07:45:00", "6.95", "13085", 0, 2),
        ("536365", "2010-12-01 08:26:00", "2.55", "17850", 1, 2),
    ]
    q = {Path(r._file_path).name: r for r in store.read(QUARANTINE_TABLE).collect()}
    assert q["online_retail_II.xlsx"].reason.startswith("malformed spreadsheet row")
    assert (
        q["online_retail_II.xlsx"]._row_number == 3
        and "stray" in q["online_retail_II.xlsx"].raw_record
    )
    assert q["renamed.xlsx"].reason.startswith("unreadable xlsx workbook")
    again = ingest(spark, config)
    assert again.status == "success" and again.rows_written == {}
