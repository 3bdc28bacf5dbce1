"""How much recall is there to win? The identity map of a generated data root against what
its records could give at best.

    python benchmarks/identity_ceiling.py --data-root /tmp/demo_seeds/s1   # after `cdp run identity`

On a small generated data root (a few thousand persons: the link list, the map and the truth
are collected to this process, which a diagnostic on generated data may do and the platform
never does) it prints linkable recall (records carrying an identifier, those left out of the
map counted as customers of their own, as ``cdp evaluate identity`` prints it) beside two
ceilings, both with every pair the run scored and linked (``gold/identity_match_pairs``,
only its true pairs):

* **values split by the truth**: every exact link of every rule joins its value's records
  *of one true person* only (guards that never err, and a value held by two people, a family
  e-mail, given to each holder). Unreachable by any method that does not know the truth.
* **shared values dropped**: every exact link whose value only one true person holds, no link
  through a value two people hold (a consent row carrying only a family e-mail then belongs
  to nobody, as the stage decides). What perfect guards could reach.

Then, for the true pairs still split in the first ceiling, what the two sides have in common
(e-mail, phone, birth date, postcode, loyalty / CRM / customer id; else a surname; else
nothing): a pair whose sides share only a surname or nothing is one no link rule or
comparison can make without also joining namesakes.
"""

from __future__ import annotations

import argparse
import collections
import sys
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pandas as pd
from deltalake import DeltaTable

from cdp.identity.links import identifier_links
from cdp.identity.nodes import RECORD, prepare_records
from cdp.identity.rules import RECORD_TABLES
from cdp.identity.stage import exact_rules
from cdp.notebook import open_workspace

SHARED_FIELDS = ("email", "phone", "birth_date", "postcode", "loyalty_id", "crm_id", "customer_id")


def _pairs(df: pd.DataFrame, by: list[str]) -> int:
    n = df.groupby(by).size()
    return int((n * (n - 1) // 2).sum())


def _components(keys: pd.Series, edges: list[tuple[object, object]]) -> dict[str, int]:
    g = nx.Graph()
    g.add_nodes_from(("r", k) for k in keys)
    g.add_edges_from(edges)
    out: dict[str, int] = {}
    for i, comp in enumerate(nx.connected_components(g)):
        for node in comp:
            if node[0] == "r":
                out[node[1]] = i
    return out


@dataclass
class Ceilings:
    """Linkable recall of the run and the two ceilings (module docstring), over
    ``linkable_records`` records and ``true_pairs`` true pairs; ``split_kinds``: the true
    pairs split even in the unreachable ceiling, by what their sides have in common."""

    linkable_records: int
    true_pairs: int
    run: float
    perfect_guards: float
    truth_split: float
    split_kinds: collections.Counter[str]


def measure(root: Path, env: str = "test") -> Ceilings:
    """:class:`Ceilings` of the identity run under ``root`` (its landing at ``root/landing``)."""
    ws = open_workspace(env=env, data_root=str(root))
    rules = exact_rules(ws.config)
    frames = {
        n: ws.store.read(t.table) for n, t in RECORD_TABLES.items() if ws.store.exists(t.table)
    }
    prepared = prepare_records(frames, rules)
    links = (
        identifier_links(prepared, rules)
        .where(f"other_type = '{RECORD}'")
        .select("unit", "other_value")
        .toPandas()
    )

    truth = pd.read_parquet(root / "landing" / "_ground_truth" / "identity")
    truth = truth.drop_duplicates(["source", "source_record_id"])
    # Every live record of the record tables, with its true person, its customer (None when
    # left out of the map) and whether it carries an identifier value.
    recs = []
    for name, df in prepared.items():
        recs.append(df.select("source", "source_record_id").toPandas().assign(table=name))
    records = pd.concat(recs, ignore_index=True)
    records["key"] = records.table + "|" + records.source + "|" + records.source_record_id
    records = records.merge(truth, on=["source", "source_record_id"])
    idmap = DeltaTable(str(root / "gold" / "identity_map")).to_pandas()
    records = records.merge(
        idmap[["source", "source_record_id", "customer_id"]],
        on=["source", "source_record_id"],
        how="left",
    )
    records["customer_id"] = records.customer_id.fillna("left-out|" + records.key)
    carrying = set(links.other_value)
    linkable = records[records.key.isin(carrying)].copy()
    true_pairs = _pairs(linkable, ["person_id"])
    got = _pairs(linkable, ["person_id", "customer_id"]) / true_pairs

    person_of = dict(zip(records.key, records.person_id, strict=True))
    links["person"] = links.other_value.map(person_of)
    links = links.dropna(subset=["person"])
    holders = links.groupby("unit").person.nunique()
    pairs = DeltaTable(str(root / "gold" / "identity_match_pairs")).to_pandas()
    scored: list[tuple[object, object]] = []
    for r in pairs.itertuples():
        a = f"{r.record_table_l}|{r.source_l}|{r.source_record_id_l}"
        b = f"{r.record_table_r}|{r.source_r}|{r.source_record_id_r}"
        if person_of.get(a) is not None and person_of.get(a) == person_of.get(b):
            scored.append((("r", a), ("r", b)))

    def ceiling(use: pd.DataFrame) -> tuple[float, dict[str, int]]:
        edges = [
            (("r", k), ("v", u, p)) for k, u, p in use[["other_value", "unit", "person"]].values
        ]
        comp = _components(linkable.key, edges + scored)
        x = linkable.assign(c=linkable.key.map(comp))
        return _pairs(x, ["person_id", "c"]) / true_pairs, comp

    split_ceiling, comp = ceiling(links)
    single_ceiling, _ = ceiling(links[links.unit.map(holders) == 1])

    # What the two sides of a pair still split in the first ceiling have in common.
    allf = []
    for name, df in frames.items():
        cols = [c for c in (*SHARED_FIELDS, "last_name") if c in df.columns]
        d = df.select("source", "source_record_id", *cols).toPandas()
        d["key"] = name + "|" + d.source + "|" + d.source_record_id
        allf.append(d)
    values: dict[int, dict[str, set[str]]] = collections.defaultdict(
        lambda: collections.defaultdict(set)
    )
    for d in allf:
        for f in (*SHARED_FIELDS, "last_name"):
            if f not in d.columns:
                continue
            for k, v in d[["key", f]].dropna().values:
                if k in comp:
                    values[comp[k]][f].add(str(v).lower())
    kinds: collections.Counter[str] = collections.Counter()
    for _person, grp in linkable.assign(c=linkable.key.map(comp)).groupby("person_id"):
        sizes = list(grp.groupby("c").size().items())
        for i in range(len(sizes)):
            for j in range(i + 1, len(sizes)):
                (a, na), (b, nb) = sizes[i], sizes[j]
                common = [f for f in SHARED_FIELDS if values[a][f] & values[b][f]]
                if common:
                    kind = "share " + " + ".join(common)
                elif values[a]["last_name"] & values[b]["last_name"]:
                    kind = "share only a surname"
                else:
                    kind = "share nothing"
                kinds[kind] += na * nb

    return Ceilings(len(linkable), true_pairs, got, single_ceiling, split_ceiling, kinds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--env", default="test")
    args = ap.parse_args(argv)
    root = Path(args.data_root)
    c = measure(root, args.env)
    print(f"data root {root}: {c.linkable_records:,} linkable records, {c.true_pairs:,} true pairs")
    print(f"  linkable recall of the run (left-out records on their own): {c.run:.4f}")
    print(f"  ceiling, shared values dropped (perfect guards):            {c.perfect_guards:.4f}")
    print(f"  ceiling, values split by the truth (unreachable):           {c.truth_split:.4f}")
    print("  true pairs split even in the last ceiling, by what their sides have in common:")
    for kind, n in c.split_kinds.most_common():
        print(f"    {n:7,}  {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
