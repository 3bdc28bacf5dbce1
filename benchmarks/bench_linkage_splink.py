"""Benchmark: identity resolution on Splink's labelled person data sets, onboarded the way a
newcomer would, with nothing written by hand (the steps of ``bench_linkage_febrl.py``).

    # the files of github.com/moj-analytical-services/splink_datasets (data/), which
    # ``splink.datasets.splink_datasets`` downloads
    python benchmarks/bench_linkage_splink.py --file data/fake_1000.csv \\
        --file data/historical_figures_with_errors_50k.parquet --work /tmp/splink_bench

* ``fake_1000`` (1,000 records, 251 people): first name, surname, birth date, city, e-mail;
  names swapped, scrambled and missing, birth dates off by weeks, e-mails mistyped.
* ``historical_figures_with_errors_50k`` (50,578 records, 5,156 people from Wikidata): first
  name, surname, full name, birth date (1500s-1900s), birth place, a fake postcode, gender,
  occupation; nicknames and initials, titles as first names, typos, wrong genders, missing
  values, dates mistyped beyond any calendar.

Each file's ``unique_id`` is the record id and ``cluster`` (``group`` in older copies) the
person; both stay in the file as a user's export would have them (the draft leaves
``cluster`` in ``attributes``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_linkage_febrl import onboard_and_evaluate, print_table  # noqa: E402


def _rows(path: Path) -> list[dict[str, str]]:
    if path.suffix == ".parquet":
        return [{k: str(v) for k, v in r.items()} for r in pq.read_table(path).to_pylist()]
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _truth(files: list[Path], out: Path) -> int:
    n = 0
    with out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "source_record_id", "entity_id"])
        for path in files:
            for row in _rows(path):
                entity = row.get("cluster", row.get("group"))
                writer.writerow(["people", row["unique_id"].strip(), entity])
                n += 1
    return n


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--file", type=Path, action="append", required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/splink_bench"))
    args = parser.parse_args()
    rows = []
    for path in args.file:
        name = path.name.split(".")[0]
        row = onboard_and_evaluate(name, args.work / name, [path], _truth)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows, "data set")
    return 0


if __name__ == "__main__":
    sys.exit(main())
