"""Resolve request subjects (keyed pseudonyms) to every record and identifier of the person.

A subject's pseudonyms are matched against keyed hashes computed in Spark over
``gold/identity_identifiers``, ``gold/identity_map`` and the silver tables (silver catches
records identity did not place, an e-mail-only event for instance). The person is then every
record of the customers found plus the records matched directly, and their identifier values.

Values the person *shares* with someone who stays (a household phone, a shared address) are
not erasure keys: deleting by them would erase the other person too. Only values held by no
remaining record are used to find rows outside the record keys (bronze quarantine text,
export files, rejected-link hashes). The values are held in driver memory for the run only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp import tables as T
from cdp.privacy.columns import hmac_sha256
from cdp.privacy.suppression import ID_FIELDS, RECORD, record_value


@dataclass
class Person:
    """What an erasure batch deletes (raw values: in memory only, never written)."""

    customers: set[str] = field(default_factory=set)
    records: set[str] = field(default_factory=set)  # "<source>|<source_record_id>"
    member_keys: set[str] = field(default_factory=set)  # "<table>|<source>|<record id>"
    values: dict[str, set[str]] = field(default_factory=dict)  # id_type -> exclusive values
    raw_values: set[str] = field(default_factory=set)  # as landed (quarantine text scan)

    def all_values(self) -> set[str]:
        return {v for vs in self.values.values() for v in vs}

    def pseudonyms(self, key: bytes) -> list[tuple[str, str]]:
        """``(id_type, pseudonym)`` for the suppression list."""
        from cdp.privacy.keys import pseudonym

        out = [(t, pseudonym(key, v)) for t, vs in self.values.items() for v in vs]
        out += [(RECORD, pseudonym(key, r)) for r in self.records]
        out += [("customer_id", pseudonym(key, c)) for c in self.customers]
        return out


def _silver_tables(store: Any) -> dict[str, DataFrame]:
    return {
        t.name.split("/", 1)[1]: store.read(t.name)
        for t in T.CANONICAL_TABLES
        if store.exists(t.name)
    }


def _ids(df: DataFrame) -> list[str]:
    return [f for f in ID_FIELDS if f in df.columns]


def resolve(
    store: Any,
    key: bytes,
    *,
    emails: Iterable[str],
    phones: Iterable[str],
    customer_ids: Iterable[str],
) -> Person:
    """The person(s) behind the subjects' pseudonyms (one batch for all open requests)."""
    spark = store.spark
    subj = [("email", p) for p in emails] + [("phone", p) for p in phones]
    subj += [("customer_id", p) for p in customer_ids]
    wanted = spark.createDataFrame(subj or [("none", "")], "id_type string, pseudonym string")
    # Only the kinds of identifier the batch names are hashed: every match below joins on
    # id_type, so rows of other kinds could never match (a batch of customer ids hashes no
    # e-mail or phone of the whole customer base).
    kinds = sorted({t for t, _p in subj})
    person = Person()
    # 1. Customers through the identity tables.
    if store.exists(T.IDENTITY_IDENTIFIERS.name) and kinds:
        hit = (
            store.read(T.IDENTITY_IDENTIFIERS.name)
            .where(F.col("id_type").isin(kinds))
            .withColumn("pseudonym", hmac_sha256(F.col("id_value"), key))
            .join(F.broadcast(wanted), ["id_type", "pseudonym"], "left_semi")
        )
        person.customers |= {
            r["customer_id"] for r in hit.select("customer_id").distinct().collect()
        }
    if store.exists(T.IDENTITY_MAP.name):
        idmap = store.read(T.IDENTITY_MAP.name)
        by_id = idmap.select(
            "customer_id", hmac_sha256(F.col("customer_id"), key).alias("pseudonym")
        ).join(F.broadcast(wanted.where("id_type = 'customer_id'")), "pseudonym", "left_semi")
        person.customers |= {
            r["customer_id"] for r in by_id.select("customer_id").distinct().collect()
        }
        if person.customers:
            recs = idmap.join(customers_frame(spark, person.customers), "customer_id").collect()
            person.records |= {f"{r['source']}|{r['source_record_id']}" for r in recs}
            person.member_keys |= {
                f"{r['record_table']}|{r['source']}|{r['source_record_id']}" for r in recs
            }
    # 2. Silver records matched directly by the subject's e-mail or phone.
    silver = _silver_tables(store)
    direct = wanted.where("id_type IN ('email', 'phone')")
    direct_hits: dict[str, set[tuple[str, str]]] = {}  # pseudonym -> its records
    for name, df in silver.items():
        cols = [c for c in ("email", "phone") if c in kinds and c in df.columns]
        if not cols:
            continue
        pairs = df.select(
            "source",
            "source_record_id",
            F.explode(
                F.array(
                    *[
                        F.struct(
                            F.lit(c).alias("id_type"), hmac_sha256(F.col(c), key).alias("pseudonym")
                        )
                        for c in cols
                    ]
                )
            ).alias("p"),
        ).select("source", "source_record_id", "p.id_type", "p.pseudonym")
        for r in pairs.join(F.broadcast(direct), ["id_type", "pseudonym"], "inner").collect():
            person.records.add(f"{r['source']}|{r['source_record_id']}")
            person.member_keys.add(f"{name}|{r['source']}|{r['source_record_id']}")
            direct_hits.setdefault(r["pseudonym"], set()).add((r["source"], r["source_record_id"]))
    if direct_hits and store.exists(T.IDENTITY_MAP.name):
        _add_customers_of_direct_hits(store, person, direct_hits)
    if not person.records and not person.customers:
        return person
    # 3. The identifier values of those records, and which of them someone else also holds.
    found: dict[str, set[str]] = {}
    others: dict[str, set[str]] = {}
    records = spark.createDataFrame([(r,) for r in sorted(person.records)], "_rk string")
    for df in silver.values():
        fields = _ids(df)
        raw_cols = [f"{f}_raw" for f in fields if f"{f}_raw" in df.columns]
        keyed = df.withColumn("_rk", record_value(F.col("source"), F.col("source_record_id")))
        mine = keyed.join(F.broadcast(records), "_rk", "left_semi")
        for r in mine.select(*fields, *raw_cols).collect():
            for f in fields:
                if r[f]:
                    found.setdefault(f, set()).add(str(r[f]))
            person.raw_values |= {str(r[c]) for c in raw_cols if r[c]}
        if not found:
            continue
        vals = spark.createDataFrame(
            [(t, v) for t, vs in found.items() for v in vs], "id_type string, value string"
        )
        theirs = (
            keyed.join(F.broadcast(records), "_rk", "left_anti")
            .select(
                F.explode(
                    F.array(
                        *[
                            F.struct(
                                F.lit(f).alias("id_type"), F.col(f).cast("string").alias("value")
                            )
                            for f in fields
                        ]
                    )
                ).alias("p")
            )
            .select("p.id_type", "p.value")
            .join(F.broadcast(vals), ["id_type", "value"], "left_semi")
            .distinct()
        )
        for r in theirs.collect():
            others.setdefault(r["id_type"], set()).add(r["value"])
    if store.exists(T.IDENTITY_IDENTIFIERS.name) and found:
        # One scan for every kind of value (a scan per kind, each filtering on a literal list
        # sent value by value through Py4J, took seconds for 1,000 people).
        values = spark.createDataFrame(
            [(t, v) for t, vs in sorted(found.items()) for v in sorted(vs)],
            "id_type string, id_value string",
        )
        for r in (
            store.read(T.IDENTITY_IDENTIFIERS.name)
            .join(customers_frame(spark, person.customers), "customer_id", "left_anti")
            .join(F.broadcast(values), ["id_type", "id_value"], "left_semi")
            .select("id_type", "id_value")
            .distinct()
            .collect()
        ):
            others.setdefault(r["id_type"], set()).add(r["id_value"])
    person.values = {t: vs - others.get(t, set()) for t, vs in found.items()}
    person.values = {t: vs for t, vs in person.values.items() if vs}
    shared = {v for vs in others.values() for v in vs}
    person.raw_values -= shared
    return person


def _add_customers_of_direct_hits(
    store: Any, person: Person, direct_hits: Mapping[str, set[tuple[str, str]]]
) -> None:
    """The customers of records found by the subject's own e-mail or phone in silver, and
    all their records.

    Identity may have kept the value out of ``gold/identity_identifiers`` (an e-mail judged
    shared, a phone over its holder limit) while still placing the records that carry it:
    those customers are the subject. When one pseudonym's records belong to more than one
    customer (a household address), none of them is taken whole: only the matched records
    go, so that nobody else's profile is erased.
    """
    spark = store.spark
    keys = [(p, s, r) for p, recs in direct_hits.items() for s, r in recs]
    hits = spark.createDataFrame(keys, "pseudonym string, source string, source_record_id string")
    idmap = store.read(T.IDENTITY_MAP.name)
    owners: dict[str, set[str]] = {}
    for r in (
        idmap.join(F.broadcast(hits), ["source", "source_record_id"])
        .select("pseudonym", "customer_id")
        .distinct()
        .collect()
    ):
        owners.setdefault(r["pseudonym"], set()).add(r["customer_id"])
    sole = {next(iter(cs)) for cs in owners.values() if len(cs) == 1} - person.customers
    if not sole:
        return
    person.customers |= sole
    recs = idmap.join(customers_frame(spark, sole), "customer_id").collect()
    person.records |= {f"{r['source']}|{r['source_record_id']}" for r in recs}
    person.member_keys |= {
        f"{r['record_table']}|{r['source']}|{r['source_record_id']}" for r in recs
    }


def customers_frame(spark: Any, customers: Iterable[str]) -> DataFrame:
    """``customer_id`` of ``customers`` as a small frame to join on (broadcast): a filter on a
    literal list costs a Py4J call per value."""
    rows = [(c,) for c in sorted(set(customers))]
    return F.broadcast(spark.createDataFrame(rows, "customer_id string"))


def sql_list(values: Iterable[str]) -> str:
    """A Spark SQL ``IN`` list of string literals (quotes and backslashes escaped)."""
    out = []
    for v in sorted(set(values)):
        out.append("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'")
    return ", ".join(out) or "NULL"


def table_predicate(
    columns: Iterable[str], person: Person, extra: Mapping[str, set[str]] | None = None
) -> str | None:
    """The rows of a table (by its columns) that belong to ``person``; None: no such column.

    Record keys (``source`` + ``source_record_id``, with ``_l``/``_r`` pair suffixes, or a
    member key ``record_l``/``record_r``), customer ids (gold ids and the source's own),
    identity-history ids, exclusive identifier values and their unkeyed hashes
    (``value_hash``), and bronze content hashes (``_record_hash``, given in ``extra``).
    """
    cols = set(columns)
    parts: list[str] = []
    if person.records:
        recs = sql_list(person.records)
        for sfx in ("", "_l", "_r"):
            if {f"source{sfx}", f"source_record_id{sfx}"} <= cols:
                parts.append(f"concat_ws('|', source{sfx}, source_record_id{sfx}) IN ({recs})")
    if person.member_keys:
        for c in ("record_l", "record_r"):
            if c in cols:
                parts.append(f"{c} IN ({sql_list(person.member_keys)})")
    ids = person.customers | person.values.get("customer_id", set())
    if ids:
        for c in ("customer_id", "old_id", "new_id"):
            if c in cols:
                parts.append(f"{c} IN ({sql_list(ids)})")
    for t in ("email", "phone", "crm_id", "loyalty_id", "anonymous_id", "device_id"):
        vs = person.values.get(t)
        if vs and t in cols:
            parts.append(f"{t} IN ({sql_list(vs)})")
    if person.raw_values:
        for t in ("email_raw", "phone_raw"):
            if t in cols:
                parts.append(f"{t} IN ({sql_list(person.raw_values)})")
    if "value_hash" in cols and person.all_values():
        import hashlib

        hashes = {hashlib.sha256(v.encode("utf-8")).hexdigest() for v in person.all_values()}
        parts.append(f"value_hash IN ({sql_list(hashes)})")
    for col, vs in (extra or {}).items():
        if col in cols and vs:
            parts.append(f"{col} IN ({sql_list(vs)})")
    return " OR ".join(f"({p})" for p in parts) if parts else None
