"""Deterministic randomness as Spark column expressions.

Every random draw is a hash of ``(seed, salt, key columns)``: the same seed gives the same
value for the same record whatever the partitioning, the number of cores or the order in
which Spark evaluates rows. ``rand()``/``uuid()``/``monotonically_increasing_id()`` are never
used because their values depend on partitioning or are not reproducible at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F

_MASK53 = (1 << 53) - 1
_TWO53 = float(1 << 53)


def _col(key: Column | str) -> Column:
    return F.col(key) if isinstance(key, str) else key


def uniform(seed: int, salt: str, *keys: Column | str) -> Column:
    """A double in [0, 1) that depends only on the seed, the salt and the key columns."""
    h = F.xxhash64(F.lit(seed).cast("long"), F.lit(salt), *[_col(k) for k in keys])
    # The low 53 bits of the hash fill a double's mantissa exactly.
    return h.bitwiseAND(F.lit(_MASK53)).cast("double") / F.lit(_TWO53)


def randint(u: Column, lo: int, hi: int) -> Column:
    """An int in [lo, hi) from a uniform column."""
    return (F.floor(u * (hi - lo)) + lo).cast("int")


def pick(values: Sequence[str], u: Column) -> Column:
    """One of ``values``, uniformly, from a uniform column."""
    arr = F.array(*[F.lit(v) for v in values])
    return F.element_at(arr, (F.floor(u * len(values)) + 1).cast("int"))


def pick_at(values: Sequence[str], index: Column) -> Column:
    """``values[index]`` (0-based) for an int column."""
    arr = F.array(*[F.lit(v) for v in values])
    return F.element_at(arr, (index + 1).cast("int"))


def weighted(choices: Sequence[tuple[str, float]], u: Column) -> Column:
    """One of the labels, with the given probabilities (normalised), from a uniform column."""
    total = sum(w for _, w in choices)
    expr: Column | None = None
    cumulative = 0.0
    for label, weight in choices[:-1]:
        cumulative += weight / total
        expr = (
            F.when(u < cumulative, F.lit(label))
            if expr is None
            else expr.when(u < cumulative, F.lit(label))
        )
    last = F.lit(choices[-1][0])
    return last if expr is None else expr.otherwise(last)


def hex_id(seed: int, salt: str, *keys: Column | str, length: int = 20) -> Column:
    """A hex string of ``length`` chars (<= 32) from md5 of the keys: collision-free in practice."""
    text = F.concat_ws("|", F.lit(str(seed)), F.lit(salt), *[_col(k).cast("string") for k in keys])
    return F.substring(F.md5(text), 1, length)


def uuid_like(seed: int, salt: str, *keys: Column | str) -> Column:
    """A UUID-shaped (8-4-4-4-12) deterministic identifier."""
    h = hex_id(seed, salt, *keys, length=32)
    return F.concat_ws(
        "-",
        F.substring(h, 1, 8),
        F.substring(h, 9, 4),
        F.substring(h, 13, 4),
        F.substring(h, 17, 4),
        F.substring(h, 21, 12),
    )


def permute(ids: Column, multiplier: int, offset: int, modulus: int) -> Column:
    """A bijection of [0, modulus) (``multiplier`` must be coprime with ``modulus``).

    Used to derive identifiers (phone numbers, member numbers) that are unique per person
    without looking like the person's row number.
    """
    return ((ids.cast("long") * F.lit(multiplier) + F.lit(offset)) % F.lit(modulus)).cast("long")


def digits(value: Column, width: int) -> Column:
    """Zero-padded decimal string of an integer column."""
    return F.lpad(value.cast("string"), width, "0")


def standard_normal(u: Column, u2: Column) -> Column:
    """A N(0, 1) draw from two independent uniform columns (Box-Muller)."""
    return F.sqrt(-2.0 * F.log(F.greatest(u, F.lit(1e-12)))) * F.cos(2 * math.pi * u2)


def exponential(u: Column, mean: Column | float) -> Column:
    """An exponential draw with the given mean from a uniform column."""
    return -F.log(F.greatest(F.lit(1.0) - u, F.lit(1e-12))) * mean


_POISSON_TERMS = 40  # inverse-CDF terms; means at or above _POISSON_NORMAL use the normal
_POISSON_NORMAL = 20.0


def poisson(mean: Column, u: Column, u2: Column) -> Column:
    """A Poisson(``mean``) count (int) from two independent uniform columns.

    Below a mean of 20 the exact inverse CDF over the first 40 terms (one ``aggregate`` per
    row: no explode, no shuffle); from 20 up the normal approximation (Box-Muller with ``u``
    and ``u2``), whose error there is far below what a test fixture needs.
    """
    m = F.greatest(mean.cast("double"), F.lit(0.0))

    def step(acc: Column, k: Column) -> Column:
        term = acc["term"] * m / (k + 1)
        return F.struct(
            term.alias("term"),
            (acc["cdf"] + term).alias("cdf"),
            (acc["n"] + (u > acc["cdf"]).cast("int")).alias("n"),
        )

    start = F.struct(F.exp(-m).alias("term"), F.exp(-m).alias("cdf"), F.lit(0).alias("n"))
    exact = F.aggregate(
        F.sequence(F.lit(0), F.lit(_POISSON_TERMS - 1)), start, step, lambda acc: acc["n"]
    )
    normal = F.greatest(F.floor(m + F.sqrt(m) * standard_normal(u, u2) + 0.5), F.lit(0))
    normal = normal.cast("int")
    return F.when(m < _POISSON_NORMAL, exact).otherwise(normal)


def seq(n: Column) -> Column:
    """``[0, 1, .., n-1]``, empty for n <= 0 (Spark's ``sequence(0, -1)`` counts down)."""
    return F.when(n > 0, F.sequence(F.lit(0), (n - 1).cast("int"))).otherwise(
        F.array().cast("array<int>")
    )


class Vocab:
    """Per-group word lists flattened into one array literal.

    ``at(index(group, u))`` picks uniformly from the group's list with one map lookup and
    one array lookup, instead of a CASE over every group: this keeps generated code small
    where many columns pick from per-country lists. Parallel lists (a name and its nickname)
    share the offsets, so one index serves both.
    """

    def __init__(self, groups: dict[str, list[str]]) -> None:
        self.values: list[str] = []
        offsets: dict[str, int] = {}
        lengths: dict[str, int] = {}
        for key, values in groups.items():
            if not values:
                raise ValueError(f"group {key!r} has no values")
            offsets[key] = len(self.values)
            lengths[key] = len(values)
            self.values.extend(values)
        self._offsets = offsets
        self._lengths = lengths

    @staticmethod
    def _map(values: dict[str, int]) -> Column:
        pairs = [x for k, v in values.items() for x in (F.lit(k), F.lit(v))]
        return F.create_map(*pairs)

    def local_index(self, group: Column, u: Column) -> Column:
        """0-based position inside the group's own list."""
        return F.floor(u * F.element_at(self._map(self._lengths), group)).cast("int")

    def index(self, group: Column, u: Column) -> Column:
        """0-based position in the flat array for a group column and a uniform column."""
        offset = F.element_at(self._map(self._offsets), group)
        return (offset + self.local_index(group, u)).cast("int")

    def at(self, index: Column, values: Sequence[str] | None = None) -> Column:
        """The value at ``index`` in this vocabulary (or in a parallel list of equal length)."""
        chosen = self.values if values is None else values
        if len(chosen) != len(self.values):
            raise ValueError("a parallel list must have one value per vocabulary value")
        return pick_at(chosen, index)
