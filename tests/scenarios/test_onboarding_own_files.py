"""A new user onboards a folder of their own exports without editing Python (issue 27):
``cdp init``, ``cdp source draft`` per folder (the drafts accepted as written), ``cdp source
check``, ``cdp run all``, and an export at the end.

The files under ``tests/fixtures/onboarding/`` are written by hand, not by ``cdp generate``,
with their own column names: a semicolon-separated Latin-1 customer CSV ("Kundennummer",
"E-mail Address", "Given name", "Date of birth" as dd.mm.yyyy, "Letzte Änderung"), an orders
CSV with a UTF-8 byte-order mark that names the customer by number, and a nested JSON array
of web-shop orders that names the customer by e-mail (some upper-cased), and a German
newsletter-consent CSV ("Zweck", "Kanal", "Status", "Zeitpunkt" as dd.mm.yyyy HH:mm). Jürgen
Müller (K10001) is in all of them; identity must make him one customer, and he is exported,
while Anna Schmidt, who withdrew her consent, is not.

The commands run in this process, as ``cdp`` would run them (``cli.main``), on the test
session (``conf/test.yaml``'s small JVM settings) and the site's own ``conf/``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp import cli
from cdp import tables as T
from cdp.config import load_config
from cdp.storage import open_store

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "onboarding"
FILES = {
    "kunden": "kunden.csv",
    "orders": "orders.csv",
    "webshop": "webshop_orders.json",
    "einwilligungen": "einwilligungen.csv",
}
# The test environment's settings (small JVM, two shuffle partitions).
RUN_ARGS = ["--env", "test"]
# Thirty customers are too few to train and evaluate a propensity model (a split part
# without both classes): the train stage says so and goes on, and the score stage skips the
# untrained models; the site keeps the default models and `run all` still ends in an export.
# A site starts with no audience: the user writes one (configuration, not code).
AUDIENCE = """\
name: known_twice
description: Customers seen in more than one system
purpose: marketing
channel: email
rule: source_count > 1
"""


def _sha(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


@pytest.mark.timeout(1800)  # nine stages on a busy 2-core machine
def test_own_files_go_from_init_to_an_export(
    spark: SparkSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for var in ("CDP_CONF_DIR", "CDP_ENV", "CDP_DATA_ROOT", "CDP_LANDING_ROOT"):
        monkeypatch.delenv(var, raising=False)
    site = tmp_path / "acme"
    assert cli.main(["init", str(site)]) == 0
    monkeypatch.chdir(site)

    landing = site / "data" / "landing"
    for name, file in FILES.items():
        (landing / name).mkdir(parents=True)
        shutil.copy(FIXTURES / file, landing / name / file)
        assert cli.main(["source", "draft", str(landing / name), "--name", name]) == 0
    printed = capsys.readouterr()
    # No sampled value reaches the console.
    assert not [v for v in ("juergen.mueller", "Jürgen", "14.03.1975") if v in str(printed)]
    drafts = {
        p.stem: yaml.safe_load(p.read_text(encoding="utf-8"))
        for p in (site / "conf" / "sources").glob("*.yaml")
    }
    assert {n: d["kind"] for n, d in drafts.items()} == {
        "kunden": "profile",
        "orders": "transaction",
        "webshop": "transaction",
        "einwilligungen": "consent",
    }
    assert drafts["kunden"]["options"]["encoding"] == "ISO-8859-1"
    assert drafts["kunden"]["options"]["delimiter"] == ";"
    assert drafts["kunden"]["mapping"]["customer_id"] == "Kundennummer"
    assert drafts["orders"]["mapping"]["customer_id"] == "Customer_No"
    assert drafts["webshop"]["mapping"]["email"] == "customer.email"

    (site / "conf" / "audiences" / "known_twice.yaml").write_text(AUDIENCE, encoding="utf-8")

    # What silver will make of the customers, before any table is written.
    assert cli.main(["source", "check", "kunden", *RUN_ARGS[:2]]) == 0
    checked = capsys.readouterr().out
    assert "source kunden: profile -> silver/person_records; 20 rows checked" in checked
    assert "nothing was written" in checked and not (site / "data" / "bronze").exists()

    assert cli.main(["run", "all", *RUN_ARGS]) == 0, capsys.readouterr().err[-4000:]
    console = str(capsys.readouterr())
    for model in ("purchase_90d", "churn_90d"):
        assert f"{model}: not trained: {model} at " in console
        assert "both classes are needed" in console
        assert f"{model}: not scored: no champion nor challenger yet" in console

    config = load_config(env="test")
    assert config.data_root_uri == str(site.resolve() / "data")
    store = open_store(spark, config)

    def per_source(table: str) -> dict[str, int]:
        rows = store.read(table).where(~F.col("is_deleted")).groupBy("source").count()
        return {r["source"]: r["count"] for r in rows.collect()}

    # Silver holds every row of every file.
    assert per_source(T.PERSON_RECORDS.name) == {"kunden": 30}
    assert per_source(T.TRANSACTIONS.name) == {"orders": 39, "webshop": 22}

    # Identity: K10001 in the CRM, his orders by customer number, his web-shop orders by
    # (upper-cased) e-mail: one customer.
    ids = {
        (r["source"], r["source_record_id"]): r["customer_id"]
        for r in store.read(T.IDENTITY_MAP.name).collect()
    }
    assert len(ids) == 30 + 39 + 22 + 8  # consents are identity records too
    juergen = {
        ids[("kunden", "K10001")],
        ids[("orders", "A-2024-0001")],
        ids[("webshop", "W-5001")],
    }
    assert len(juergen) == 1
    # Anna (K10002): her orders by number, her two web-shop orders by e-mail.
    anna = {ids[("kunden", "K10002")], ids[("orders", "A-2024-0002")]}
    anna |= {ids[("webshop", "W-5002")], ids[("webshop", "W-5003")]}
    assert len(anna) == 1 and anna != juergen
    # Thirty people in the CRM, each one customer, none merged with another.
    assert len({ids[("kunden", f"K{10001 + i}")] for i in range(30)}) == 30
    assert len(set(ids.values())) == 30

    # The export ran and sealed the audience's file with a manifest.
    manifests = sorted((site / "data" / "exports").glob("known_twice/dt=*/run=*/manifest.json"))
    assert manifests, sorted(p.name for p in (site / "data").iterdir())
    body = json.loads(manifests[-1].read_text(encoding="utf-8"))
    assert body["row_count"] >= 1 and (manifests[-1].parent / "_SUCCESS").exists()
    delivered = {
        r["email_sha256"]
        for part in manifests[-1].parent.glob("part-*.parquet")
        for r in pq.read_table(part).to_pylist()
    }
    assert len(delivered) == body["row_count"]
    assert _sha("juergen.mueller@example.de") in delivered  # granted, seen in three systems
    assert _sha("anna.schmidt@example.com") not in delivered  # withdrew after granting
