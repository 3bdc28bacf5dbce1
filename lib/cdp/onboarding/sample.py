"""A bounded sample of a file or folder, read in plain Python, and how it is written.

``cdp source draft`` must answer in a second on a laptop and must not start Spark or collect
whole tables, so the sample is read here with the standard library (csv, json, gzip, bz2,
xml.etree) and pyarrow for Parquet/ORC, stopping after ``limit`` records. What it finds out
(format, compression, encoding, delimiter, header, XML row tag, JSON layout) is what the
source declaration's ``format`` and ``options`` must say for Spark to read the same files.

Columns are named the way bronze names them: top-level names made safe for Delta
(:func:`cdp.bronze.readers.unique_names`), nested JSON/XML/Parquet fields as paths below them
(``customer.name.first``), which is how a source's mapping addresses nested fields.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from cdp.bronze import spreadsheet
from cdp.bronze.readers import unique_names
from cdp.errors import ConfigError
from cdp.sources import SourceFormat

__all__ = ["DEFAULT_LIMIT", "Sample", "read_sample", "sample_files"]

DEFAULT_LIMIT = 1_000
# How much of a file is looked at to tell its encoding and delimiter.
_HEAD_BYTES = 64 * 1024
# A JSON array is parsed element by element from at most this much text.
_MAX_JSON_CHARS = 64 * 1024 * 1024

_EXTENSIONS = {
    ".csv": SourceFormat.CSV,
    ".tsv": SourceFormat.CSV,
    ".txt": SourceFormat.CSV,
    ".json": SourceFormat.JSON,
    ".jsonl": SourceFormat.NDJSON,
    ".ndjson": SourceFormat.NDJSON,
    ".xml": SourceFormat.XML,
    ".parquet": SourceFormat.PARQUET,
    ".orc": SourceFormat.ORC,
    ".xlsx": SourceFormat.XLSX,
    ".xlsm": SourceFormat.XLSX,
    ".xlsb": SourceFormat.XLSX,
    ".xls": SourceFormat.XLSX,
    ".ods": SourceFormat.XLSX,
}
_COMPRESSIONS = {".gz": "gzip", ".bz2": "bzip2"}
_DELIMITERS = ",;\t|"

Path_ = tuple[str, ...]


@dataclass
class Sample:
    """What a sample of a source's files says about them; ``rows`` hold text values only."""

    format: SourceFormat
    files: list[Path]
    compression: str | None = None
    encoding: str | None = None  # Spark's charset name (UTF-8, ISO-8859-1 ...); text formats
    bom: bool = False
    delimiter: str | None = None
    header: bool | None = None
    row_tag: str | None = None
    sheet: str | None = None  # an Excel workbook's ``sheet`` option ("*": every sheet)
    multiline: bool = False  # a JSON array or pretty-printed objects (Spark's multiLine)
    columns: list[Path_] = field(default_factory=list)
    rows: list[dict[Path_, str | None]] = field(default_factory=list)
    # How each decision was reached, for the draft's comments (no values).
    notes: dict[str, str] = field(default_factory=dict)


def sample_files(path: str | Path) -> list[Path]:
    """The data files of ``path`` (a file, or every file below a folder), sorted; hidden and
    marker files (``.crc``, ``_SUCCESS``) left out as the ingest leaves them out."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ConfigError(f"{path}: no such file or folder")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        for name in sorted(filenames):
            if not name.startswith((".", "_")):
                out.append(Path(dirpath) / name)
    if not out:
        raise ConfigError(f"{path}: the folder holds no data files")
    return sorted(out)


def _split_name(p: Path) -> tuple[str, str | None]:
    """(data extension, compression) of a file name: ``a.csv.gz`` -> (``.csv``, ``gzip``)."""
    suffixes = [s.lower() for s in p.suffixes]
    compression = _COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    return (suffixes[-1] if suffixes else ""), compression


def _open_bytes(p: Path, compression: str | None) -> IO[bytes]:
    if compression == "gzip":
        return gzip.open(p, "rb")  # type: ignore[return-value]  # a GzipFile reads bytes
    if compression == "bzip2":
        return bz2.open(p, "rb")
    return open(p, "rb")  # noqa: SIM115 - the caller closes it


def _magic_compression(p: Path) -> str | None:
    with open(p, "rb") as fh:
        head = fh.read(3)
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head == b"BZh":
        return "bzip2"
    return None


def _sniff_format(head: bytes) -> SourceFormat:
    if head.startswith((spreadsheet.XLSX_MAGIC, spreadsheet.XLS_MAGIC)):
        return SourceFormat.XLSX
    if head.startswith(b"PAR1"):
        return SourceFormat.PARQUET
    if head.startswith(b"ORC"):
        return SourceFormat.ORC
    text = head.lstrip(b"\xef\xbb\xbf\xff\xfe \t\r\n\x00")
    if text.startswith(b"<"):
        return SourceFormat.XML
    if text.startswith((b"{", b"[")):
        return SourceFormat.JSON
    return SourceFormat.CSV


def detect_encoding(head: bytes) -> tuple[str, str, bool, str]:
    """(Spark charset, Python codec, has a byte-order mark, evidence) of a text file's head."""
    if head.startswith(b"\xef\xbb\xbf"):
        return "UTF-8", "utf-8-sig", True, "UTF-8 byte-order mark"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16", "utf-16", True, "UTF-16 byte-order mark"
    # Cut at the last line break so that a character split by the read is not held against it.
    cut = head[: head.rfind(b"\n") + 1] or head
    try:
        cut.decode("utf-8")
    except UnicodeDecodeError:
        if any(0x80 <= b <= 0x9F for b in cut):
            return "windows-1252", "cp1252", False, "not valid UTF-8; bytes 0x80-0x9F: Windows-1252"
        return "ISO-8859-1", "latin-1", False, "not valid UTF-8: read as Latin-1 (ISO-8859-1)"
    return "UTF-8", "utf-8", False, "valid UTF-8"


def detect_delimiter(lines: list[str]) -> tuple[str, str]:
    """The delimiter of CSV ``lines`` and why: ``csv.Sniffer`` first, else the character that
    splits every line into the same number of fields, most often."""
    text = "\n".join(lines[:50])
    try:
        found = csv.Sniffer().sniff(text, delimiters=_DELIMITERS).delimiter
        return found, f"csv.Sniffer on {min(len(lines), 50)} lines"
    except csv.Error:
        pass
    best, best_fields = ",", 0
    for candidate in _DELIMITERS:
        counts = {len(next(csv.reader([line], delimiter=candidate))) for line in lines[:50]}
        if len(counts) == 1:
            n = counts.pop()
            if n > best_fields:
                best, best_fields = candidate, n
    return best, "the same number of fields on every sampled line"


def _looks_like_data(cell: str) -> bool:
    text = cell.strip()
    if not text:
        return True
    if "@" in text:
        return True
    stripped = text.replace(".", "").replace(",", "").replace("-", "").replace("/", "")
    return stripped.replace(":", "").replace(" ", "").isdigit()


def detect_header(first: list[str], below: list[list[str]]) -> tuple[bool, str]:
    """Whether the first CSV line names the columns, and why.

    A line with a data-like cell (a number, a date, an e-mail) is data. One with empty cells
    is a header only when a column's name stands above data-like values: spreadsheets export
    empty header cells over empty columns (``ts,event,email,,``), while a headerless file's
    first row has gaps like any other row."""
    cells = [c.strip() for c in first]
    if any(_looks_like_data(c) for c in cells if c):
        return False, "the first line holds data-like cells (numbers, dates, e-mail)"
    if all(cells):
        return True, "no cell of the first line looks like data"
    for j, name in enumerate(cells):
        values = [row[j].strip() for row in below if j < len(row) and row[j].strip()]
        if name and values and sum(map(_looks_like_data, values)) * 2 >= len(values):
            return True, (
                f"no filled cell of the first line looks like data, and '{name}' heads "
                "data-like values (the empty cells head empty columns)"
            )
    return False, "the first line has empty cells and names no column of data-like values"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _flatten(record: dict[str, Any], prefix: Path_ = ()) -> dict[Path_, str | None]:
    """Nested objects become paths; arrays stay one value (their JSON), as bronze keeps them."""
    out: dict[Path_, str | None] = {}
    for key, value in record.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value:
            out.update(_flatten(value, path))
        else:
            out[path] = _text(value)
    return out


def _safe_top_level(rows: list[dict[Path_, str | None]]) -> list[dict[Path_, str | None]]:
    """Rename top-level names the way bronze does (``E-mail Address`` -> ``E-mail_Address``)."""
    tops: list[str] = []
    for row in rows:
        for path in row:
            if path[0] not in tops:
                tops.append(path[0])
    safe = dict(zip(tops, unique_names(tops), strict=True))
    return [{(safe[p[0]], *p[1:]): v for p, v in row.items()} for row in rows]


def _columns(rows: list[dict[Path_, str | None]]) -> list[Path_]:
    seen: dict[Path_, None] = {}
    for row in rows:
        for path in row:
            seen.setdefault(path, None)
    return list(seen)


# --- per format --------------------------------------------------------------------------


def _read_csv(sample: Sample, codec: str, limit: int) -> None:
    rows: list[dict[Path_, str | None]] = []
    names: list[str] | None = None
    for p in sample.files:
        with _open_bytes(p, sample.compression) as raw:
            text = io.TextIOWrapper(raw, encoding=codec, errors="replace", newline="")
            head_lines = []
            for line in text:
                head_lines.append(line.rstrip("\r\n"))
                if len(head_lines) >= 50:
                    break
            if not head_lines:
                continue
            if sample.delimiter is None:
                sample.delimiter, why = detect_delimiter([x for x in head_lines if x.strip()])
                sample.notes["delimiter"] = why
                first = next(
                    csv.reader([head_lines[0].lstrip("\ufeff")], delimiter=sample.delimiter)
                )
                sample.header, sample.notes["header"] = detect_header(
                    first,
                    [
                        next(csv.reader([x], delimiter=sample.delimiter))
                        for x in head_lines[1:]
                        if x.strip()
                    ],
                )
        with _open_bytes(p, sample.compression) as raw:
            text = io.TextIOWrapper(raw, encoding=codec, errors="replace", newline="")
            reader = csv.reader(text, delimiter=sample.delimiter or ",")
            for i, cells in enumerate(reader):
                if i == 0 and cells:
                    cells[0] = cells[0].lstrip("\ufeff")
                if i == 0 and sample.header:
                    names = unique_names([c.strip() for c in cells]) if names is None else names
                    continue
                if not any(c.strip() for c in cells):
                    continue
                if names is None:
                    names = [f"_c{j}" for j in range(len(cells))]
                rows.append(
                    {(n,): (cells[j] if j < len(cells) else None) for j, n in enumerate(names)}
                )
                if len(rows) >= limit:
                    break
        if len(rows) >= limit:
            break
    sample.columns = [(n,) for n in names or []]
    sample.rows = rows


def _json_values(text: str, limit: int) -> Iterator[Any]:
    """Records of a JSON array or of concatenated JSON values, element by element, so that a
    large (or cut-off) file yields its first records without being parsed whole."""
    decoder = json.JSONDecoder()
    i, n = 0, len(text)

    def skip(i: int) -> int:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        return i

    i = skip(0)
    in_array = i < n and text[i] == "["
    if in_array:
        i += 1
    count = 0
    while count < limit:
        i = skip(i)
        if i >= n or (in_array and text[i] == "]"):
            return
        try:
            value, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return
        count += 1
        yield value


def _read_json(sample: Sample, codec: str, limit: int) -> None:
    records: list[Any] = []
    for p in sample.files:
        with _open_bytes(p, sample.compression) as raw:
            text = io.TextIOWrapper(raw, encoding=codec, errors="replace").read(_MAX_JSON_CHARS)
        text = text.lstrip("\ufeff")
        stripped = text.lstrip()
        lines = [x for x in stripped.splitlines() if x.strip()]
        one_per_line = False
        if stripped.startswith("{") and lines:
            try:
                json.loads(lines[0])
                one_per_line = True
            except json.JSONDecodeError:
                one_per_line = False
        if one_per_line:
            sample.format = SourceFormat.NDJSON
            sample.notes["format"] = "one JSON object per line (JSON lines)"
            for line in lines:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a malformed line: bronze quarantines it
                if len(records) >= limit:
                    break
        else:
            sample.format = SourceFormat.JSON
            sample.multiline = True
            what = "a JSON array" if stripped.startswith("[") else "pretty-printed JSON"
            sample.notes["format"] = f"{what} (read with multiLine)"
            records.extend(_json_values(stripped, limit - len(records)))
        if len(records) >= limit:
            break
    flat: list[dict[Path_, str | None]] = [
        _flatten(r) if isinstance(r, dict) else {("value",): _text(r)} for r in records
    ]
    sample.rows = _safe_top_level(flat)
    sample.columns = _columns(sample.rows)


def _xml_record(elem: ET.Element, prefix: Path_ = ()) -> dict[Path_, str | None]:
    """An XML row element as paths (attributes as ``_name``, Spark's attribute prefix)."""
    out: dict[Path_, str | None] = {}
    for key, value in elem.attrib.items():
        out[(*prefix, f"_{key}")] = value
    children = list(elem)
    counts = Counter(c.tag for c in children)
    for child in children:
        path = (*prefix, child.tag)
        if counts[child.tag] > 1:
            out[path] = json.dumps([(c.text or "").strip() for c in children if c.tag == child.tag])
        elif len(child) or child.attrib:
            out.update(_xml_record(child, path))
            if (child.text or "").strip() and not len(child):
                out[(*path, "_VALUE")] = child.text.strip() if child.text else None
        else:
            out[path] = (child.text or "").strip() or None
    return out


def _read_xml(sample: Sample, limit: int) -> None:
    rows: list[dict[Path_, str | None]] = []
    for p in sample.files:
        with _open_bytes(p, sample.compression) as fh:
            depth = 0
            for event, elem in ET.iterparse(fh, events=("start", "end")):
                if event == "start":
                    depth += 1
                    if depth == 2 and sample.row_tag is None:
                        sample.row_tag = elem.tag
                        sample.notes["row_tag"] = "the tag of the root element's children"
                    continue
                depth -= 1
                if depth == 1 and elem.tag == sample.row_tag:
                    rows.append(_xml_record(elem))
                    elem.clear()
                    if len(rows) >= limit:
                        break
        if len(rows) >= limit:
            break
    sample.rows = _safe_top_level(rows)
    sample.columns = _columns(sample.rows)


def _read_columnar(sample: Sample, limit: int) -> None:
    records: list[dict[str, Any]] = []
    for p in sample.files:
        if sample.format is SourceFormat.PARQUET:
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(p).iter_batches(batch_size=min(limit, 10_000)):
                records.extend(batch.to_pylist()[: limit - len(records)])
                if len(records) >= limit:
                    break
        else:
            import pyarrow.orc as po

            orc = po.ORCFile(p)
            for stripe in range(orc.nstripes):
                records.extend(orc.read_stripe(stripe).to_pylist()[: limit - len(records)])
                if len(records) >= limit:
                    break
        if len(records) >= limit:
            break
    sample.rows = _safe_top_level([_flatten(r) for r in records])
    sample.columns = _columns(sample.rows)


def _read_workbooks(sample: Sample, limit: int) -> None:
    """An Excel workbook's rows as bronze reads them (:mod:`cdp.bronze.spreadsheet`): the
    first sheet's, and every other sheet's with the same header (``sheet: "*"``)."""
    records: list[dict[str, Any]] = []
    for p in sample.files:
        content = p.read_bytes()
        found = spreadsheet.sheets(content, {"sheet": "*"})
        if not found or not found[0].columns:
            continue
        first = found[0]
        same = [s for s in found if s.columns == first.columns]
        if sample.sheet is None:
            sample.sheet = "*" if len(same) > 1 else None
            others = len(found) - len(same)
            sample.notes["sheet"] = (
                f"{len(same)} of {len(found)} sheets share the first sheet's header"
                if len(same) > 1
                else "the first sheet"
            ) + (f"; {others} other sheet(s) not read" if others else "")
        options = {"sheet": "*" if sample.sheet == "*" else "0"}
        for _, _, values, _ in spreadsheet.sheet_rows(content, options, first.columns):
            records.append(dict(zip(first.columns, values, strict=True)))
            if len(records) >= limit:
                break
        if len(records) >= limit:
            break
    sample.rows = _safe_top_level([{(k,): v for k, v in r.items()} for r in records])
    sample.columns = _columns(sample.rows)


def read_sample(path: str | Path, *, limit: int = DEFAULT_LIMIT) -> Sample:
    """At most ``limit`` records of the files under ``path``, and how they are written.

    A folder is read file by file (sorted) until the sample is full; its files should share
    one format: the most common (format, compression) among them is the one sampled, and the
    others are named in ``notes``.
    """
    files = sample_files(path)
    kinds: dict[tuple[SourceFormat, str | None], list[Path]] = {}
    for p in files:
        ext, compression = _split_name(p)
        compression = compression or _magic_compression(p)
        fmt = _EXTENSIONS.get(ext)
        if fmt is None:
            with _open_bytes(p, compression) as fh:
                fmt = _sniff_format(fh.read(_HEAD_BYTES))
        kinds.setdefault((fmt, compression), []).append(p)
    (fmt, compression), chosen = max(kinds.items(), key=lambda kv: len(kv[1]))
    sample = Sample(format=fmt, files=chosen, compression=compression)
    ext_note = "file extension" if _split_name(chosen[0])[0] in _EXTENSIONS else "file content"
    sample.notes["format"] = f"{fmt.value} (from the {ext_note})"
    if len(kinds) > 1:
        sample.notes["other_files"] = (
            f"{len(files) - len(chosen)} of {len(files)} files are of another format and were "
            "not sampled"
        )
    if compression:
        sample.notes["compression"] = f"{compression} (Spark reads it from the file extension)"
    if fmt in (SourceFormat.PARQUET, SourceFormat.ORC):
        _read_columnar(sample, limit)
        return sample
    if fmt is SourceFormat.XLSX:
        _read_workbooks(sample, limit)
        return sample
    with _open_bytes(chosen[0], compression) as fh:
        head = fh.read(_HEAD_BYTES)
    sample.encoding, codec, sample.bom, why = detect_encoding(head)
    sample.notes["encoding"] = why
    if fmt is SourceFormat.CSV:
        _read_csv(sample, codec, limit)
    elif fmt in (SourceFormat.JSON, SourceFormat.NDJSON):
        _read_json(sample, codec, limit)
    elif fmt is SourceFormat.XML:
        _read_xml(sample, limit)
    else:  # pragma: no cover - TEXT is never detected
        raise ConfigError(f"{path}: cannot sample format {fmt.value}")
    return sample
