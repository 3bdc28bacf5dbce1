"""Identity resolution end to end on generated data, scored against the generator's ground
truth with the shipped rules (conf/rules/identity.yaml).

It reads the tables of the shared ``cdp demo`` run (generate -> ingest -> silver -> identity ...
in its own process, the way a user runs it) rather than running those stages again here.

Records that carry no identifier at all (anonymous till receipts) can belong to nobody we know,
so recall is asserted over *linkable* records, and against what those records can give: the
ceiling of ``benchmarks/identity_ceiling.py`` (every exact link whose value one true person
holds, plus the run's true scored pairs: what perfect guards reach). A fixed recall target
says more about the generator than about the stage: since the generator's buyers behave like
real ones (2026-12-06: about half buy once, so fewer orders bridge a person's systems), the
demo's seed holds split people whose records share only a surname or nothing, and its ceiling
is 0.918 where the issue's 0.95 was asserted before. Measured on 2026-12-06 (300 persons,
seed 5): precision 1.0000 (3,043 pairs), linkable recall 0.9354 (0.9181 with the 19 records
left out of the map counted as customers of their own: the ceiling), overall recall 0.934.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.config import load_config
from cdp.identity.evaluate import evaluate_identity, load_truth
from cdp.identity.stage import IDENTIFIERS_TABLE, MAP_TABLE
from cdp.storage import open_store
from conftest import DemoRun

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import identity_ceiling  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.timeout(2400)  # shares the demo run, which may not have run yet
def test_generated_data_precision_and_recall(spark: SparkSession, demo_run: DemoRun) -> None:
    demo_run.check()
    config = load_config(env="test", overrides={"data_root": str(demo_run.data_root)})
    store = open_store(spark, config)
    identity_map = store.read(MAP_TABLE)

    metrics = evaluate_identity(
        spark,
        identity_map=identity_map,
        truth=load_truth(spark, Path(config.landing_uri) / "_ground_truth" / "identity"),
    )
    print(metrics.format())
    linkable = metrics.linkable
    assert linkable is not None
    assert metrics.all_records.precision >= 0.995
    ceilings = identity_ceiling.measure(demo_run.data_root)
    print(
        f"linkable recall {ceilings.run:.4f}, perfect-guards ceiling {ceilings.perfect_guards:.4f}"
    )
    assert ceilings.run >= ceilings.perfect_guards - 0.005  # what perfect guards would reach
    assert linkable.recall >= 0.9  # and the ceiling itself cannot sink unnoticed
    assert metrics.all_records.recall >= 0.6  # bounded by anonymous receipts (about 0.7)
    # Every map record is a live silver record, once; the stage said how many it mapped.
    mapped = identity_map.count()
    assert mapped == identity_map.select("source", "source_record_id").distinct().count()
    said = re.search(r"\[identity\] (\d+) records -> (\d+) customers", demo_run.output)
    assert said is not None, demo_run.output[-3000:]
    assert int(said.group(1)) == mapped
    assert int(said.group(2)) == identity_map.select("customer_id").distinct().count()
    # Event-only identifiers (cookies, devices) reach customers through logins.
    types = {
        r["id_type"] for r in store.read(IDENTIFIERS_TABLE).select("id_type").distinct().collect()
    }
    assert {"email", "crm_id", "anonymous_id"} <= types
    assert identity_map.where(F.col("customer_id").rlike("^c_[0-9a-f]{16}$")).count() == mapped
