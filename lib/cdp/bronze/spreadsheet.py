"""Spreadsheets (``.xlsx``, ``.xlsm``, ``.xlsb``, ``.xls``, ``.ods``): each sheet's rows as text.

Spreadsheets are how people hand data over (UCI's "Online Retail" log is one), and Spark
reads none: the Excel data source is a Maven package. Bronze therefore reads a workbook's
bytes with Spark's ``binaryFile`` source and parses them here, on the executors
(:func:`cdp.bronze.readers.read_source_files`); ``cdp source draft`` samples one the same way.
The parser is calamine (``python-calamine``, Rust; the engine pandas offers for Excel): a
541,909-row sheet in about a second, where openpyxl took over a minute.

Values become text as a person sees them in Excel, so silver's standardizers read them like a
CSV export's: an integral number without a decimal point (``17850``, not ``17850.0``), other
numbers in their shortest form (``2.55``), a date-formatted cell as ISO
(``2010-12-01 08:26:00``, ``2010-12-01``), booleans as ``true`` / ``false``, an empty cell
as null. Formulas are read as the value the spreadsheet program last saved.

Options (a source's ``options``): ``sheet``: a sheet's name or 0-based position, or ``*`` for
every sheet (default: the first); ``header``: ``"true"`` (default) takes the first non-empty
row as the column names, ``"false"`` names columns ``_c0``, ``_c1`` ... like Spark's CSV reader.
Wholly empty rows are skipped. A row with a value beyond the header's last column is kept whole
in ``_corrupt_record`` (quarantined), never cut short.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

XLSX_MAGIC = b"PK\x03\x04"  # a zip archive, as every .xlsx and .ods is
XLS_MAGIC = b"\xd0\xcf\x11\xe0"  # an OLE2 compound file: the old binary .xls
OPTIONS = frozenset({"sheet", "header"})


class SheetNotFound(ValueError):
    """The ``sheet`` option names no sheet of the workbook."""


def cell_text(value: Any) -> str | None:
    """A cell's value as the text bronze keeps (see the module docstring)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.microsecond:
            return value.isoformat(sep=" ")
        if (value.hour, value.minute, value.second) == (0, 0, 0):
            return f"{value.date().isoformat()} 00:00:00"
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    text = str(value)
    return text if text.strip() else None


def header_flag(options: dict[str, str]) -> bool:
    return str(options.get("header", "true")).strip().lower() != "false"


def _open(content: bytes) -> Any:
    from python_calamine import CalamineWorkbook

    return CalamineWorkbook.from_filelike(io.BytesIO(content))


def selected_sheets(names: list[str], sheet: str | None) -> list[int]:
    """Positions of the sheets ``sheet`` selects among ``names`` (see the module docstring)."""
    if sheet is None or str(sheet).strip() == "":
        return [0] if names else []
    wanted = str(sheet).strip()
    if wanted == "*":
        return list(range(len(names)))
    if wanted in names:
        return [names.index(wanted)]
    folded = [n.casefold() for n in names]
    if wanted.casefold() in folded:
        return [folded.index(wanted.casefold())]
    if wanted.isdigit() and int(wanted) < len(names):
        return [int(wanted)]
    raise SheetNotFound(f"no sheet {wanted!r} in the workbook (its sheets: {names})")


@dataclass(frozen=True)
class Sheet:
    index: int
    name: str
    columns: tuple[str, ...]  # header names as written (bronze makes them safe)
    header_row: int  # the Excel row number of the header; 0 without one


def _rows(ws: Any) -> Iterator[tuple[int, list[str | None]]]:
    """(Excel row number, cell texts) of every row holding at least one value (calamine's
    rows start at the sheet's first row, its columns at the first used column)."""
    for number, row in enumerate(ws.iter_rows(), start=1):
        cells = [cell_text(v) for v in row]
        if any(c is not None for c in cells):
            yield number, cells


def _trimmed(cells: list[str | None]) -> list[str | None]:
    end = len(cells)
    while end and cells[end - 1] is None:
        end -= 1
    return cells[:end]


def _sheet(ws: Any, index: int, name: str, header: bool) -> Sheet:
    first = next(_rows(ws), None)
    if first is None:
        return Sheet(index, name, (), 0)
    number, cells = first
    cells = _trimmed(cells)
    if header:
        columns = tuple(c.strip() if c else f"_c{i}" for i, c in enumerate(cells))
        return Sheet(index, name, columns, number)
    return Sheet(index, name, tuple(f"_c{i}" for i in range(len(cells))), 0)


def sheets(content: bytes, options: dict[str, str]) -> list[Sheet]:
    """The selected sheets of a workbook with their columns (empty sheets have none)."""
    book = _open(content)
    names = list(book.sheet_names)
    header = header_flag(options)
    return [
        _sheet(book.get_sheet_by_index(i), i, names[i], header)
        for i in selected_sheets(names, options.get("sheet"))
    ]


def sheet_rows(
    content: bytes, options: dict[str, str], columns: tuple[str, ...]
) -> Iterator[tuple[int, int, list[str | None], str | None]]:
    """(sheet position, Excel row number, one value per column, corrupt row or None) of every
    data row of the selected sheets whose columns are ``columns``."""
    book = _open(content)
    names = list(book.sheet_names)
    header = header_flag(options)
    width = len(columns)
    for i in selected_sheets(names, options.get("sheet")):
        ws = book.get_sheet_by_index(i)
        layout = _sheet(ws, i, names[i], header)
        if layout.columns != columns:
            continue  # another group of sheets (its own header) reads it
        for number, cells in _rows(ws):
            if number <= layout.header_row:
                continue
            extra = [c for c in cells[width:] if c is not None]
            values = (cells + [None] * width)[:width]
            corrupt = json.dumps(_trimmed(cells), ensure_ascii=False) if extra else None
            yield i, number, values, corrupt
