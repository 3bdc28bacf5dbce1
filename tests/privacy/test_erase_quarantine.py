"""Bronze quarantine rows of an erased person: found by the tokens and phone numbers in their
raw or parsed text (``cdp.privacy.erase._quarantine_hashes``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from cdp import tables as T
from cdp.privacy.erase import _quarantine_hashes
from cdp.privacy.resolve import Person


class _Store:
    def __init__(self, tables: dict[str, DataFrame]) -> None:
        self.tables = tables

    def exists(self, name: str) -> bool:
        return name in self.tables

    def read(self, name: str) -> DataFrame:
        return self.tables[name]


def test_quarantine_rows_are_found_by_phone_tails_and_tokens(spark: SparkSession) -> None:
    rows = [
        ("h1", "ann.lee@example.com,Ann,Lee", None),  # the person's e-mail
        ("h2", "id=77;tel=+44 (0)20 7946 0018", None),  # one phone, another way round
        ("h3", None, '{"phone": "020-7946-0958"}'),  # the second phone, in the parsed text
        ("h4", "bob@example.com,+44 20 7946 0999", None),  # someone else's phone and mail
        ("h5", "call 7946 0018", None),  # too few digits to be the phone
        ("h6", "CRM-000123|Ann", None),  # the person's record id
    ]
    quarantine = spark.createDataFrame(
        rows, "_record_hash string, raw_record string, parsed_record string"
    )
    person = Person(
        records={"crm|crm-000123"},
        values={"email": {"ann.lee@example.com"}, "phone": {"+442079460018", "+442079460958"}},
    )
    ctx: Any = SimpleNamespace(spark=spark, store=_Store({T.BRONZE_QUARANTINE.name: quarantine}))
    assert _quarantine_hashes(ctx, person) == {"h1", "h2", "h3", "h6"}
