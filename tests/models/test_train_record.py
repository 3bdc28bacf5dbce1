"""The MLflow input example is synthetic: no holdout row is stored as an artifact (issue 23)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pyspark.sql import SparkSession

from cdp.models.labels import LABEL
from cdp.models.train import Candidate, build_pipeline, drop_training_summaries
from cdp.models.train_record import EXAMPLE_CATEGORY, signature_examples


def test_input_example_holds_fixed_values_not_holdout_rows(spark: SparkSession) -> None:
    holdout = spark.createDataFrame(
        [(34, 1250.5, "DE", "f", 1.0), (71, 80.0, "FR", "m", 0.0), (None, None, None, None, 0.0)],
        f"age INT, spend_365d DOUBLE, country STRING, gender STRING, {LABEL} DOUBLE",
    )
    numeric, categorical = ["age", "spend_365d"], ["country", "gender"]
    # As the train stage does: a fitted LR keeps its summary, which holds the session, and
    # cannot be serialised into a prediction closure once the session has observed a metric.
    model = drop_training_summaries(
        build_pipeline(numeric, categorical, Candidate("lr", {"maxIter": 5}), seed=1).fit(holdout)
    )
    found: Any = SimpleNamespace(
        numeric=numeric, categorical=categorical, chosen=SimpleNamespace(model=model)
    )
    example, output = signature_examples(found, holdout)
    assert example.to_dict("records") == [
        {"age": 0.0, "spend_365d": 0.0, "country": EXAMPLE_CATEGORY, "gender": EXAMPLE_CATEGORY}
    ]
    assert str(example["age"].dtype) == "float64"  # integer inputs declared double
    assert len(output) == 1
