"""Tests for the synthetic landing generator (``cdp.generate``) and its source declarations.

One module-scoped landing of a few hundred persons is generated and inspected; two small
extra runs (a subset of sources) check determinism.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.generate import SOURCE_NAMES, GenerateReport, Timeline, generate_landing
from cdp.generate.persons import GenContext, persons_frame
from cdp.generate.register import REGISTER_COLUMNS, person_register
from cdp.generate.transactions import purchases_frame

PERSONS = 300
SEED = 42
SOURCES_DIR = Path(__file__).resolve().parents[2] / "conf" / "demo" / "sources"
JUNK_EMAILS = {"test@test.com", "none@none.com", "n/a", "noemail@example.com", "x@x.x"}


@pytest.fixture(scope="module")
def landing(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> GenerateReport:
    out = tmp_path_factory.mktemp("landing")
    return generate_landing(spark, out_dir=str(out), persons=PERSONS, seed=SEED)


@pytest.fixture(scope="module")
def root(landing: GenerateReport) -> Path:
    return Path(landing.out_dir)


@pytest.fixture(scope="module")
def manifest(landing: GenerateReport) -> dict[str, Any]:
    return json.loads(Path(landing.manifest_path).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def declarations() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(SOURCES_DIR.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert path.stem == spec["name"], f"{path.name} declares {spec['name']}"
        out[spec["name"]] = spec
    return out


def _spark_format(fmt: str) -> str:
    return "json" if fmt == "ndjson" else fmt


def _read(spark: SparkSession, spec: dict[str, Any], paths: list[Path]) -> DataFrame:
    return (
        spark.read.format(_spark_format(spec["format"]))
        .options(**spec.get("options", {}))
        .load([str(p) for p in paths])
    )


def _data_files(root: Path, spec: dict[str, Any]) -> list[Path]:
    return sorted(p for p in root.glob(spec["path"]) if p.stat().st_size > 0)


def _drop_dirs(root: Path, source: str) -> list[Path]:
    return sorted((root / source).glob("drop=*"))


def _pos_lines(root: Path) -> list[str]:
    """Data lines of every POS file, decoded from Latin-1, header lines removed."""
    lines = []
    for path in sorted((root / "pos_transactions").glob("*/*.csv")):
        text = path.read_bytes().decode("iso-8859-1")
        lines.extend(text.splitlines()[1:])
    return lines


def _web_lines(root: Path, drop: str | None = None) -> list[str]:
    pattern = f"drop={drop}/*.json.gz" if drop else "*/*.json.gz"
    lines: list[str] = []
    for path in sorted((root / "web_events").glob(pattern)):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines.extend(fh.read().splitlines())
    return lines


def _parses(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


# ------------------------------------------------------------------------------------------
# Layout and declarations
# ------------------------------------------------------------------------------------------


def test_every_source_is_declared_and_its_glob_matches_the_files(
    root: Path, landing: GenerateReport, declarations: dict[str, dict[str, Any]]
) -> None:
    assert set(declarations) == set(SOURCE_NAMES)
    for name, spec in declarations.items():
        matched = {str(p.relative_to(root)) for p in root.glob(spec["path"])}
        assert matched, f"{name}: {spec['path']} matches nothing"
        assert matched == set(landing.files[name]), name
        assert [d.name for d in _drop_dirs(root, name)] == [f"drop={d}" for d in landing.drops]
    leftovers = [
        p for p in root.rglob("*") if p.name.startswith(("_SUCCESS", ".")) or p.suffix == ".crc"
    ]
    assert not leftovers, leftovers
    assert not (root / "_ground_truth" / "_staging").exists()


def test_each_source_reads_with_its_declared_format_and_mapping(
    spark: SparkSession,
    root: Path,
    manifest: dict[str, Any],
    declarations: dict[str, dict[str, Any]],
) -> None:
    for name, spec in declarations.items():
        files = _data_files(root, spec)
        # CSV takes its header from one file and Parquet its schema from one footer, so
        # drops with drifted schemas are read one file at a time; JSON and XML merge.
        if spec["format"] in ("csv", "parquet"):
            frames = [_read(spark, spec, [f]) for f in files]
        else:
            frames = [_read(spark, spec, files)]
        assert sum(df.count() for df in frames) == manifest["rows"][name], name
        for df in frames:
            mapped = df.select(*[F.expr(expr).alias(k) for k, expr in spec["mapping"].items()])
            mapped.limit(5).collect()  # every mapping expression resolves and evaluates
            for column in [*spec["primary_key"], spec["event_time"]]:
                assert column in df.columns, f"{name}: {column} missing"


def test_pos_file_is_latin1_with_decimal_commas(root: Path) -> None:
    raw = b"".join(p.read_bytes() for p in sorted((root / "pos_transactions").glob("*/*.csv")))
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    text = raw.decode("iso-8859-1")
    assert re.search(r"[äöüéèëïçÄÖÜÉ]", text)
    assert re.search(r";\d+,\d\d;(GBP|USD|EUR);", text)


# ------------------------------------------------------------------------------------------
# Determinism
# ------------------------------------------------------------------------------------------


def test_same_seed_gives_the_same_rows_and_another_seed_does_not(
    spark: SparkSession, root: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    generate_landing(
        spark,
        out_dir=str(again),
        persons=PERSONS,
        seed=SEED,
        sources=["crm_contacts", "web_events", "person_register"],
    )
    for source in ("crm_contacts", "person_register"):
        for drop in sorted(p.name for p in _drop_dirs(root, source)):
            first = spark.read.option("header", "true").csv(str(root / source / drop))
            second = spark.read.option("header", "true").csv(str(again / source / drop))
            assert_df_equality(first, second, ignore_row_order=True)
    assert sorted(_web_lines(root)) == sorted(_web_lines(again))
    for source in ("web_events", "person_register"):
        truth = [
            spark.read.parquet(str(base / "_ground_truth" / "identity")).filter(
                F.col("source") == source
            )
            for base in (root, again)
        ]
        assert_df_equality(*truth, ignore_row_order=True)

    # Another seed gives other people (a full second landing would only repeat this check
    # at many times the cost: every value is a hash of the seed).
    timeline = Timeline.build("2024-01-01", "2025-12-31")
    other = persons_frame(
        GenContext(spark=spark, seed=SEED + 1, persons=PERSONS, timeline=timeline, partitions=2)
    )
    mine = spark.read.parquet(str(root / "_ground_truth" / "persons"))
    columns = ["person_id", "email", "phone", "first_name", "street"]
    assert mine.select(columns).intersect(other.select(columns)).count() == 0


# ------------------------------------------------------------------------------------------
# Ground truth
# ------------------------------------------------------------------------------------------


def test_identity_covers_every_record(
    spark: SparkSession,
    root: Path,
    landing: GenerateReport,
    manifest: dict[str, Any],
    declarations: dict[str, dict[str, Any]],
) -> None:
    identity = spark.read.parquet(landing.ground_truth["identity"])
    per_source = {r["source"]: r["count"] for r in identity.groupBy("source").count().collect()}
    assert set(per_source) == set(SOURCE_NAMES)
    assert identity.select("source", "source_record_id").distinct().count() == identity.count()
    # Single-version sources: one identity row per delivered record (duplicates excluded).
    single_version = (
        "ecommerce_orders",
        "web_events",
        "pos_transactions",
        "email_engagement",
        "person_register",
    )
    for name in single_version:
        assert per_source[name] == manifest["rows"][name] - manifest["duplicate_rows"][name]
    # Every record id readable from the files is in the identity table.
    readable = (
        "crm_contacts",
        "loyalty_members",
        "consents",
        "support_tickets",
        "web_events",
        "person_register",
    )
    for name in readable:
        spec = declarations[name]
        files = _data_files(root, spec)
        frames = (
            [_read(spark, spec, [f]) for f in files]
            if spec["format"] == "csv"
            else [_read(spark, spec, files)]
        )
        rid = spec["mapping"]["source_record_id"]
        ids = frames[0].select(F.expr(rid).alias("id"))
        for df in frames[1:]:
            ids = ids.unionByName(df.select(F.expr(rid).alias("id")))
        known = identity.filter(F.col("source") == name).select(
            F.col("source_record_id").alias("id")
        )
        assert ids.dropna().distinct().subtract(known).count() == 0, name

    persons_per_source = (
        identity.dropna(subset=["person_id"])
        .groupBy("person_id")
        .agg(F.countDistinct("source").alias("n"))
    )
    assert persons_per_source.filter("n >= 3").count() > PERSONS // 2
    # Anonymous-only visitors exist and carry no person; identified cookies do.
    web = identity.filter(F.col("source") == "web_events")
    assert web.filter(F.col("person_id").isNull()).count() > 0
    assert web.filter(F.col("person_id").isNotNull()).count() > 0


def test_one_person_appears_under_different_spellings(
    spark: SparkSession, root: Path, landing: GenerateReport
) -> None:
    persons = spark.read.parquet(landing.ground_truth["persons"])
    truth = persons.select(
        "person_id",
        *[F.col(c).alias(f"true_{c}") for c in ("first_name", "nickname", "last_name", "email")],
    )
    identity = spark.read.parquet(landing.ground_truth["identity"]).filter(
        F.col("source") == "crm_contacts"
    )
    crm = spark.read.option("header", "true").csv(str(root / "crm_contacts" / "*" / "*.csv"))
    joined = (
        crm.join(identity, crm.contact_id == identity.source_record_id)
        .join(truth, "person_id")
        .cache()
    )
    assert joined.count() == crm.count()
    # Same person, written differently: nicknames, typos, email case and whitespace.
    assert (
        joined.filter(F.col("first_name") == F.col("true_nickname"))
        .filter(F.col("true_nickname") != F.col("true_first_name"))
        .count()
        > 0
    )
    assert joined.filter(F.col("first_name") != F.col("true_first_name")).count() > 0
    assert joined.filter(F.col("email") != F.col("true_email")).count() > 0
    assert joined.filter(F.trim(F.lower("email")) == F.col("true_email")).count() > 0
    joined.unpersist()
    phones = [r["phone"] for r in crm.select("phone").dropna().collect()]
    assert any(p.startswith("+") for p in phones)
    assert any(p.startswith("0") for p in phones)
    assert any(p.startswith("(") for p in phones)
    # Households share a landline, and some partners share one email address.
    shared_phones = persons.groupBy("home_phone").count().filter("home_phone is not null")
    assert shared_phones.filter("count > 1").count() > 0
    assert persons.groupBy("email").count().filter("count > 1").count() > 0


def test_orders_carry_the_buyers_billing_name(
    spark: SparkSession, root: Path, landing: GenerateReport
) -> None:
    persons = spark.read.parquet(landing.ground_truth["persons"]).select(
        "person_id", "first_name", "nickname", "last_name"
    )
    identity = spark.read.parquet(landing.ground_truth["identity"]).filter(
        F.col("source") == "ecommerce_orders"
    )
    orders = spark.read.parquet(str(root / "ecommerce_orders" / "*" / "*.parquet")).dropDuplicates(
        ["order_id"]
    )
    rows = (
        orders.join(identity, orders.order_id == identity.source_record_id)
        .join(persons, "person_id")
        .select(
            "billing_name",
            F.concat_ws(" ", "first_name", "last_name").alias("true_name"),
            F.concat_ws(" ", "nickname", "last_name").alias("nick_name"),
        )
        .collect()
    )
    assert len(rows) == orders.count() > 200
    named = [r for r in rows if r["billing_name"] is not None]
    exact = sum(r["billing_name"] == r["true_name"] for r in named)
    by_nickname = sum(r["billing_name"] == r["nick_name"] != r["true_name"] for r in named)
    # Mostly the buyer's own name, some nicknames and typos, a few orders without one.
    assert 0.93 < len(named) / len(rows) < 0.995
    assert 0.7 < exact / len(named) < 0.95
    assert 0.03 < by_nickname / len(named) < 0.2
    assert exact + by_nickname < len(named)


def test_labels_have_both_classes_and_match_purchases(
    spark: SparkSession, landing: GenerateReport
) -> None:
    labels = spark.read.parquet(landing.ground_truth["labels"])
    purchases = spark.read.parquet(landing.ground_truth["purchases"])
    assert labels.count() == 2 * PERSONS
    cutoffs = {str(r["cutoff_date"]) for r in labels.select("cutoff_date").distinct().collect()}
    assert cutoffs == {landing.train_cutoff, landing.scoring_cutoff}
    for column in ("purchased_in_horizon", "churned"):
        for cutoff in cutoffs:
            values = {
                r[column]
                for r in labels.filter(F.col("cutoff_date") == cutoff).select(column).collect()
            }
            assert values == {True, False}, (column, cutoff)
    # Purchases continue past the scoring horizon's start, so labels are computable.
    last = purchases.agg(F.max("purchased_at")).first()[0]
    assert last.date().isoformat() > landing.scoring_cutoff

    cutoff = F.to_timestamp(F.lit(landing.scoring_cutoff))
    end = cutoff + F.expr(f"INTERVAL {landing.horizon_days} DAYS")
    bought = (
        purchases.filter((F.col("purchased_at") >= cutoff) & (F.col("purchased_at") < end))
        .select("person_id")
        .distinct()
        .withColumn("expected", F.lit(True))
    )
    scoring = labels.filter(F.col("cutoff_date") == landing.scoring_cutoff)
    actual = scoring.select("person_id", F.col("purchased_in_horizon").alias("expected"))
    expected = (
        scoring.select("person_id")
        .join(bought, "person_id", "left")
        .select("person_id", F.coalesce("expected", F.lit(False)).alias("expected"))
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.fixture(scope="module")
def purchase_process(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, Any]:
    """Persons and purchases (pandas) of 5,000 persons straight from the frames: enough
    buyers for the shape of the purchase process, without writing a landing."""
    timeline = Timeline.build("2024-01-01", "2025-12-31")
    ctx = GenContext(spark=spark, seed=SEED, persons=5000, timeline=timeline, partitions=2)
    staged = str(tmp_path_factory.mktemp("persons") / "persons")
    persons_frame(ctx).write.parquet(staged)  # as generate_landing does: one plan per frame
    people = spark.read.parquet(staged)
    bought = purchases_frame(ctx, people).select("person_id", "purchase_ts")
    columns = ["person_id", "activity", "purchase_rate", "first_purchase_ts", "churn_ts"]
    return people.select(*columns).toPandas(), bought.toPandas()


def test_purchase_process_looks_like_retail(purchase_process: tuple[Any, Any]) -> None:
    """Issue 26 item 5: most buyers buy once, a few buy often, December sells more than
    June, and nobody buys after dropping out."""
    people, bought = purchase_process
    per_buyer = bought.groupby("person_id").size()
    assert 0.45 < (per_buyer == 1).mean() < 0.7  # most buyers buy once in the window
    assert per_buyer.quantile(0.9) >= 4 and per_buyer.max() >= 20  # and a long tail
    months = (bought["purchase_ts"] // 86_400).astype("datetime64[D]").dt.month
    assert (months == 12).sum() > 1.5 * (months == 6).sum()  # the season
    churned = bought.merge(people, on="person_id")
    after = churned["churn_ts"].notna() & (churned["purchase_ts"] > churned["churn_ts"] + 86_400)
    assert not after.any()  # a drop-out is final (a store's day may round up to 21:00)
    first = (
        churned.groupby("person_id")["purchase_ts"]
        .min()
        .to_frame()
        .join(people.set_index("person_id")["first_purchase_ts"])
    )
    assert (first["purchase_ts"] >= first["first_purchase_ts"] - 86_400).all()
    # Rates differ between people of the same activity (log-normal spread, not a formula).
    buyers = people[people["purchase_rate"] > 0]
    similar = buyers[(buyers["activity"] > 0.2) & (buyers["activity"] < 0.25)]["purchase_rate"]
    assert similar.quantile(0.9) > 3 * similar.quantile(0.1)


# ------------------------------------------------------------------------------------------
# Bad records, duplicates, empty files, drift
# ------------------------------------------------------------------------------------------


def test_malformed_web_lines_and_duplicates_match_the_manifest(
    root: Path, manifest: dict[str, Any]
) -> None:
    lines = _web_lines(root)
    assert len(lines) == manifest["rows"]["web_events"]
    malformed = sum(not _parses(line) for line in lines)
    assert malformed == manifest["bad_records"]["web_events"]["malformed_json"] > 0
    assert 0.005 < malformed / len(lines) < 0.02
    extra_copies = sum(n - 1 for n in Counter(lines).values())
    assert extra_copies == manifest["duplicate_rows"]["web_events"] > 0


def test_pos_defects_match_the_manifest(root: Path, manifest: dict[str, Any]) -> None:
    lines = _pos_lines(root)
    assert len(lines) == manifest["rows"]["pos_transactions"]
    counts: Counter[str] = Counter()
    for line in lines:
        fields = line.split(";")
        if len(fields) != 10:
            counts["wrong_column_count"] += 1
            continue
        try:
            datetime.strptime(fields[6], "%d/%m/%Y %H:%M")
        except ValueError:
            counts["unparsable_date"] += 1
            continue
        if not re.fullmatch(r"\d+,\d\d", fields[7]):
            counts["unparsable_number"] += 1
    assert dict(counts) == manifest["bad_records"]["pos_transactions"]


def test_email_unparsable_dates_match_the_manifest(root: Path, manifest: dict[str, Any]) -> None:
    bad = 0
    for path in (root / "email_engagement").glob("*/*.json"):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                datetime.strptime(json.loads(line)["event_ts"], "%Y-%m-%dT%H:%M:%SZ")
            except ValueError:
                bad += 1
    assert bad == manifest["bad_records"]["email_engagement"]["unparsable_date"]


def test_empty_files_and_junk_identifiers_are_present(root: Path, manifest: dict[str, Any]) -> None:
    empties = [root / p for paths in manifest["empty_files"].values() for p in paths]
    assert empties
    for path in empties:
        content = path.read_bytes()
        assert content == b"" or content.count(b"\n") == 1, path
    emails: set[str] = set()
    for path in (root / "support_tickets").glob("*/*.json"):
        emails |= {json.loads(x).get("email", "") for x in path.read_text().splitlines()}
    for path in (root / "crm_contacts").glob("*/*.csv"):
        emails |= set(re.findall(r"[^,]*@[^,]*|n/a", path.read_text()))
    assert emails & JUNK_EMAILS


def test_second_drop_has_schema_drift(
    spark: SparkSession, root: Path, landing: GenerateReport, manifest: dict[str, Any]
) -> None:
    d1, d2 = (f"drop={d}" for d in landing.drops)
    crm_header = {
        drop: (root / "crm_contacts" / drop / "part-00000.csv").read_text().splitlines()[0]
        for drop in (d1, d2)
    }
    assert "preferred_language" not in crm_header[d1]
    assert crm_header[d2].endswith(",preferred_language")

    types = {
        drop: dict(spark.read.parquet(str(root / "ecommerce_orders" / drop)).dtypes)["total_amount"]
        for drop in (d1, d2)
    }
    assert types == {d1: "double", d2: "string"}

    keys = {}
    for drop in (d1, d2):
        text = (root / "email_engagement" / drop / "part-00000.json").read_text()
        keys[drop] = set().union(*(json.loads(x).keys() for x in text.splitlines()[:50]))
    assert "campaign_id" in keys[d1] and "campaign" not in keys[d1]
    assert "campaign" in keys[d2] and "campaign_id" not in keys[d2]

    assert not any('"browser"' in x for x in _web_lines(root, landing.drops[0]))
    assert any('"browser"' in x for x in _web_lines(root, landing.drops[1]))
    assert set(manifest["drift"]) == {
        "crm_contacts",
        "ecommerce_orders",
        "email_engagement",
        "web_events",
    }


def test_crm_second_drop_updates_moves_and_deletes(root: Path, landing: GenerateReport) -> None:
    import csv

    rows: dict[str, list[dict[str, str]]] = {}
    for drop in landing.drops:
        path = root / "crm_contacts" / f"drop={drop}" / "part-00000.csv"
        with path.open(encoding="utf-8", newline="") as fh:
            rows[drop] = list(csv.DictReader(fh))
    first = {r["contact_id"]: r for r in rows[landing.drops[0]]}
    second = rows[landing.drops[1]]
    updated = [r for r in second if r["contact_id"] in first]
    assert updated, "drop 2 should update contacts from drop 1"
    assert all(r["updated_at"] > first[r["contact_id"]]["updated_at"] for r in updated)
    assert any(r["street"] != first[r["contact_id"]]["street"] for r in updated)
    assert any(r["is_deleted"] == "true" for r in second)
    assert any(r["contact_id"] not in first for r in second)


# ------------------------------------------------------------------------------------------
# Person register
# ------------------------------------------------------------------------------------------

REGISTER_PERSONS = 2000


@pytest.fixture(scope="module")
def register_rows(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    """The register of 2,000 persons with each record's true person, built without writing a
    landing (the persons table is staged as in ``generate_landing``)."""
    timeline = Timeline.build("2024-01-01", "2025-12-31")
    ctx = GenContext(
        spark=spark, seed=SEED, persons=REGISTER_PERSONS, timeline=timeline, partitions=2
    )
    staged = str(tmp_path_factory.mktemp("register") / "persons")
    previous = spark.conf.get("spark.sql.codegen.wholeStage")
    spark.conf.set("spark.sql.codegen.wholeStage", "false")
    try:
        persons_frame(ctx).write.parquet(staged)
    finally:
        spark.conf.set("spark.sql.codegen.wholeStage", str(previous))
    people = spark.read.parquet(staged)
    register = person_register(ctx, people).frame
    truth = people.select(
        F.col("person_id").alias("_pid"),
        *[
            F.col(c).alias(f"true_{c}")
            for c in (
                "first_name",
                "nickname",
                "last_name",
                "birth_date",
                "street",
                "household_id",
                "in_crm",
                "in_loyalty",
            )
        ],
    )
    return [r.asDict() for r in register.join(truth, "_pid").collect()]


def _share(rows: list[dict[str, Any]], test: Any) -> float:
    return sum(1 for r in rows if test(r)) / len(rows)


def _compact_id(value: str) -> str:
    return re.sub(r"\s", "", value).upper()


def test_register_shares_no_identifier_with_other_sources(
    spark: SparkSession, root: Path, landing: GenerateReport
) -> None:
    header = root / "person_register" / f"drop={landing.drops[0]}" / "part-00000.csv"
    assert header.read_text(encoding="utf-8").splitlines()[0].split(",") == REGISTER_COLUMNS
    register = spark.read.option("header", "true").csv(
        str(root / "person_register" / "*" / "*.csv")
    )
    values = register.select(F.explode(F.array(*[F.col(c) for c in REGISTER_COLUMNS])).alias("v"))
    values = values.dropna().select(F.trim("v").alias("v")).distinct()
    # No email and no phone number in any field (dates aside, nothing is mostly digits).
    texts = register.select(
        F.explode(
            F.array(
                *[F.col(c) for c in REGISTER_COLUMNS if c not in ("birth_date", "registered_at")]
            )
        ).alias("v")
    )
    phone_or_email = F.col("v").contains("@") | F.col("v").rlike(r"^\+?[0-9 ()-]{7,}$")
    assert texts.where(phone_or_email).count() == 0
    # No value of the register is an identifier of another source.
    identity = spark.read.parquet(landing.ground_truth["identity"])
    others = identity.where(F.col("source") != "person_register").select(
        F.col("source_record_id").alias("v")
    )
    persons = spark.read.parquet(landing.ground_truth["persons"])
    known_ids = others.unionByName(
        persons.select(
            F.explode(
                F.array(
                    "email", "phone", "crm_contact_id", "account_id", "member_id", "card_number"
                )
            ).alias("v")
        )
    )
    assert values.join(known_ids, "v").count() == 0
    # The register's own ids are in the identity ground truth, once each.
    ids = register.select(F.col("register_id").alias("source_record_id"))
    truth = identity.where(F.col("source") == "person_register")
    assert ids.count() == ids.distinct().count() == truth.count()
    assert ids.subtract(truth.select("source_record_id")).count() == 0


def test_register_persons_have_duplicates_and_appear_in_other_sources(
    register_rows: list[dict[str, Any]],
) -> None:
    rows = register_rows
    per_person = Counter(r["_pid"] for r in rows)
    persons = len(per_person)
    assert 0.3 < persons / REGISTER_PERSONS < 0.4
    assert 1.6 < len(rows) / persons < 1.95
    assert max(per_person.values()) == 4
    assert 0.4 < sum(1 for n in per_person.values() if n > 1) / persons < 0.6
    assert len({r["register_id"] for r in rows}) == len(rows)
    assert {r["_drop"] for r in rows} == set(Timeline.build("2024-01-01", "2025-12-31").drops)
    # Most register persons are also CRM contacts or loyalty members.
    pids = {r["_pid"]: r for r in rows}
    in_other = sum(1 for r in pids.values() if r["true_in_crm"] or r["true_in_loyalty"])
    assert in_other / persons > 0.7
    # One national id per person, written in several ways, on about a third of records.
    national: dict[int, set[str]] = {}
    for r in rows:
        if r["national_id"] is not None:
            national.setdefault(r["_pid"], set()).add(_compact_id(r["national_id"]))
    assert all(len(ids) == 1 for ids in national.values())
    assert len({next(iter(ids)) for ids in national.values()}) == len(national)
    assert all(re.fullmatch(r"[A-Z]{2}\d{6}[A-D]", next(iter(i))) for i in national.values())
    written = [r["national_id"] for r in rows if r["national_id"] is not None]
    assert 0.3 < len(written) / len(rows) < 0.4
    assert any(" " in w.strip() for w in written) and any(w.islower() for w in written)
    # Moves: some persons' records carry more than one address.
    streets: dict[int, set[str]] = {}
    for r in rows:
        if r["address"] is not None:
            streets.setdefault(r["_pid"], set()).add(r["address"].lower())
    moved = sum(1 for s in streets.values() if len(s) > 1)
    assert 0.05 < moved / sum(1 for n in per_person.values() if n > 1) < 0.5


def test_register_noise_rates(register_rows: list[dict[str, Any]]) -> None:
    rows = register_rows

    def iso(r: dict[str, Any]) -> str:
        return str(r["true_birth_date"].isoformat())

    def birth(r: dict[str, Any]) -> str:
        return str(r["birth_date"])

    rates = {
        "first_exact": _share(rows, lambda r: r["first_name"] == r["true_first_name"]),
        "last_exact": _share(rows, lambda r: r["last_name"] == r["true_last_name"]),
        "first_missing": _share(rows, lambda r: r["first_name"] is None),
        "last_missing": _share(rows, lambda r: r["last_name"] is None),
        "nickname": _share(
            rows, lambda r: r["first_name"] == r["true_nickname"] != r["true_first_name"]
        ),
        "swapped": _share(
            rows,
            lambda r: (
                r["first_name"] == r["true_last_name"] and r["last_name"] == r["true_first_name"]
            ),
        ),
        "upper": _share(
            rows, lambda r: r["last_name"] is not None and r["last_name"] == r["last_name"].upper()
        ),
        "digit_in_name": _share(
            rows, lambda r: bool(re.search(r"\d", (r["first_name"] or "") + (r["last_name"] or "")))
        ),
        "birth_missing": _share(rows, lambda r: r["birth_date"] is None),
        "birth_exact": _share(rows, lambda r: r["birth_date"] == iso(r)),
        "day_month_swapped": _share(
            rows,
            lambda r: (
                r["birth_date"] is not None
                and birth(r) != iso(r)
                and birth(r) == r["true_birth_date"].strftime("%Y-%d-%m")
            ),
        ),
        "year_changed": _share(
            rows,
            lambda r: (
                r["birth_date"] is not None and birth(r) != iso(r) and birth(r)[4:] == iso(r)[4:]
            ),
        ),
        "gender_missing": _share(rows, lambda r: r["gender"] is None),
        "national_id": _share(rows, lambda r: r["national_id"] is not None),
    }
    bands = {
        "first_exact": (0.65, 0.88),
        "last_exact": (0.75, 0.93),
        "first_missing": (0.005, 0.04),
        "last_missing": (0.002, 0.03),
        "nickname": (0.03, 0.10),
        "swapped": (0.003, 0.03),
        "upper": (0.03, 0.08),
        "digit_in_name": (0.002, 0.03),
        "birth_missing": (0.015, 0.05),
        "birth_exact": (0.88, 0.96),
        "day_month_swapped": (0.008, 0.035),
        "year_changed": (0.012, 0.045),
        "gender_missing": (0.2, 0.3),
        "national_id": (0.3, 0.4),
    }
    outside = {k: v for k, v in rates.items() if not bands[k][0] <= v <= bands[k][1]}
    assert not outside, outside
    # Every birth date is a valid ISO date, whatever the noise did to it.
    for r in rows:
        if r["birth_date"] is not None:
            datetime.strptime(r["birth_date"], "%Y-%m-%d")
    # Names written differently from the truth in the ways of the module docstring.
    firsts = {r["first_name"] for r in rows if r["first_name"]}
    assert any(re.search(r"[A-ZÀ-Ý]{3}", f) and f == f.upper() for f in firsts)
    assert any(f == f.lower() for f in firsts)


def test_register_names_collide_across_people(register_rows: list[dict[str, Any]]) -> None:
    people: dict[tuple[str, str], set[int]] = {}
    for r in register_rows:
        people.setdefault((r["true_first_name"], r["true_last_name"]), set()).add(r["_pid"])
    shared = [ids for ids in people.values() if len(ids) > 1]
    assert len(shared) >= 10
    # Some of them are not relatives: different households with the same name.
    households = {r["_pid"]: r["true_household_id"] for r in register_rows}
    assert any(len({households[p] for p in ids}) > 1 for ids in shared)


# ------------------------------------------------------------------------------------------
# Report and arguments
# ------------------------------------------------------------------------------------------


def test_report_matches_manifest(landing: GenerateReport, manifest: dict[str, Any]) -> None:
    assert landing.persons == manifest["persons"] == PERSONS
    assert landing.seed == manifest["seed"] == SEED
    assert dict(landing.rows) == manifest["rows"]
    assert landing.train_cutoff == manifest["train_cutoff"] < landing.scoring_cutoff
    assert landing.elapsed_seconds > 0
    for name in SOURCE_NAMES:
        assert len(landing.rows_per_drop[name]) == 2
    with pytest.raises(AttributeError):
        landing.seed = 1  # type: ignore[misc]
    sizes = {name: rows / PERSONS for name, rows in landing.rows.items()}
    assert 0.5 < sizes["crm_contacts"] < 1.2
    # About two purchases per person (most buyers buy once), split between the channels.
    assert 0.8 < sizes["ecommerce_orders"] < 2.5
    assert 6 < sizes["web_events"] <= 12
    assert 0.4 < sizes["pos_transactions"] < 1.6
    assert 0.4 < sizes["person_register"] < 0.9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"persons": 0}, "persons"),
        ({"persons": 10, "sources": ["nope"]}, "sources"),
        ({"persons": 10, "start_date": "2025-06-01"}, "400 days"),
        ({"persons": 10, "out_dir": "s3a://bucket/x"}, "local"),
    ],
)
def test_invalid_arguments_are_rejected(
    spark: SparkSession, tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"out_dir": str(tmp_path), **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_landing(spark, **args)
