"""Merge protection, first guard: identifier values the rules block outright.

A placeholder ("n/a", "test@test.com") or a value matching a blocked pattern would join
every record carrying it into one customer; its links are rejected with ``blocklist:value``
or ``blocklist:pattern`` before any component is built.
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column
from pyspark.sql import functions as F

from cdp.identity.rules import IdentityRules


def blocked(id_type: str, value: Column, rules: IdentityRules) -> Column:
    """``blocklist:value`` / ``blocklist:pattern`` / null for a value of ``id_type``."""
    bl = rules.blocklist
    words = sorted({w.lower() for w in bl.values.get("*", []) + bl.values.get(id_type, [])})
    patterns = bl.patterns.get("*", []) + bl.patterns.get(id_type, [])
    by_value = F.lower(value).isin(*words) if words else F.lit(False)
    by_pattern = reduce(lambda a, b: a | b, [value.rlike(p) for p in patterns], F.lit(False))
    return F.when(by_value, "blocklist:value").when(by_pattern, "blocklist:pattern")
