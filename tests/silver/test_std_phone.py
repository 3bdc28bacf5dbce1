"""Phone numbers to E.164 (``cdp.silver.std_phone``)."""

from __future__ import annotations

from pyspark.sql import SparkSession
from std_helpers import check, expect, run

from cdp.silver import standardize as S

# --- phone ---------------------------------------------------------------------------------


def test_phone_to_e164_international(spark: SparkSession) -> None:
    rows = [
        (1, "020 7946 0958", None),  # GB national, default region
        (2, "+44 (0)20 7946 0958", "US"),  # international form wins over the row's region
        (3, "0044 20 7946 0958", None),  # international prefix
        (4, "(415) 555-2671", "US"),  # US punctuation, row region
        (5, "415.555.2671", "United States"),  # region given as a country name
        (6, "030 901820", "DE"),  # Berlin
        (7, "+49 30 901820", None),
        (8, "06 12 34 56 78", "FR"),  # French mobile, valid with the row's region...
        (9, "06 12 34 56 78", None),  # ...invalid with the default (GB)
        (10, "+44 20 7946 0958 ext. 123", None),  # extension dropped by E.164
        (11, "+1 415 555 2671 x12", "GB"),
        (12, "0000000000", None),  # placeholder: empty
        (13, "000-000-0000", "US"),  # placeholder: empty
        (14, "123456", None),  # too short: invalid
        (15, "n/a", None),
        (16, None, "GB"),
        (17, "call me", None),
        (18, "\uff10\uff12\uff10 \uff17\uff19\uff14\uff16 \uff10\uff19\uff15\uff18", None),
        (19, "07911 123456", "Narnia"),  # unknown region: default applies
    ]
    got = run(
        spark,
        S.standardize_phone("v", default_region="GB", region_col="country"),
        rows,
        "id int, v string, country string",
    )
    by_id = {r[0]: r for r in rows}
    expected = [
        (1, "+442079460958", "ok"),
        (2, "+442079460958", "ok"),
        (3, "+442079460958", "ok"),
        (4, "+14155552671", "ok"),
        (5, "+14155552671", "ok"),
        (6, "+4930901820", "ok"),
        (7, "+4930901820", "ok"),
        (8, "+33612345678", "ok"),
        (9, None, "invalid"),
        (10, "+442079460958", "ok"),
        (11, "+14155552671", "ok"),
        (12, None, "empty"),
        (13, None, "empty"),
        (14, None, "invalid"),
        (15, None, "empty"),
        (16, None, "empty"),
        (17, None, "invalid"),
        (18, "+442079460958", "ok"),
        (19, "+447911123456", "ok"),
    ]
    check(
        got,
        expect(
            spark,
            [(i, v, by_id[i][2], by_id[i][1], s) for i, v, s in expected],
            "id int, v string, country string, v_raw string, v_status string",
        ),
    )


def test_phone_without_default_region_needs_international_form(spark: SparkSession) -> None:
    rows = [(1, "020 7946 0958"), (2, "+44 20 7946 0958")]
    got = run(spark, S.standardize_phone("v", default_region=None), rows, "id int, v string")
    check(
        got,
        expect(
            spark,
            [(1, None, "020 7946 0958", "invalid"), (2, "+442079460958", "+44 20 7946 0958", "ok")],
        ),
    )


def test_phone_repeated_values_in_one_batch(spark: SparkSession) -> None:
    # Same value under two regions must not share a cache entry.
    rows = [(i, "06 12 34 56 78", "FR" if i % 2 else "GB") for i in range(200)]
    got = run(spark, S.standardize_phone("v", region_col="c"), rows, "id int, v string, c string")
    counts = {r["v_status"]: r["count"] for r in got.groupBy("v_status").count().collect()}
    assert counts == {"ok": 100, "invalid": 100}


def test_phone_to_e164_plain_python() -> None:
    assert S.phone_to_e164("020 7946 0958", "GB") == "+442079460958"
    assert S.phone_to_e164("020 7946 0958", "gb") == "+442079460958"
    assert S.phone_to_e164("+1 (415) 555-2671", None) == "+14155552671"
    assert S.phone_to_e164("020 7946 0958", None) is None
    assert S.phone_to_e164("06 12 34 56 78", "GB") is None
    assert S.phone_to_e164("not a number", "GB") is None
    assert S.phone_to_e164("  ", "GB") is None
    assert S.phone_to_e164(None, "GB") is None
    assert S.phone_to_e164(float("nan"), "GB") is None  # type: ignore[arg-type]
