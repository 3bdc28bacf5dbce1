"""Synthetic multi-source customer data, generated with Spark column expressions.

``generate_landing(spark, out_dir=..., persons=N, seed=S)`` writes one folder per source
(CSV, Latin-1 CSV, Parquet, NDJSON, gzipped NDJSON, XML) with two delivery drops each,
realistic identifier noise, injected defects and schema drift, plus ``_ground_truth/``
(persons, purchases, record-to-person identity, churn/purchase labels, manifest.json).
"""

from __future__ import annotations

from cdp.generate.core import GROUND_TRUTH_DIR, SOURCE_NAMES, GenerateReport, generate_landing
from cdp.generate.persons import MAX_PERSONS
from cdp.generate.timeline import Timeline

__all__ = [
    "GROUND_TRUTH_DIR",
    "MAX_PERSONS",
    "SOURCE_NAMES",
    "GenerateReport",
    "Timeline",
    "generate_landing",
]
