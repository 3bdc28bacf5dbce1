"""Merge protection: whether two names or two dates can be one person's.

Shared by the shared-value check (two birth dates behind one e-mail), the e-mail name check
and the per-customer conflict caps: each asks, over an array of values, whether any two of
them cannot belong to one person, allowing typos, nicknames, swapped first and last names
and mistyped dates as the rules say (see :class:`~cdp.identity.rules.NameConflict` and
:class:`~cdp.identity.rules.DateConflict`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F

from cdp.identity.nodes import KEY_SEP
from cdp.identity.rules import DateConflict, NameConflict
from cdp.silver.std_common import fold_key_py, map_of_lists_literal


def names_conflict(values: Column, rule: NameConflict) -> Column:
    """Whether an array of folded names holds two that cannot be one person's name.

    A value may be ``first|last`` (see :func:`cdp.identity.nodes.record_attributes`): two records whose first
    and last names are swapped are one person's, not a conflict."""
    same = same_name(rule)

    def first(v: Column) -> Column:
        return F.substring_index(v, KEY_SEP, 1)

    def last(v: Column) -> Column:
        return F.when(F.instr(v, KEY_SEP) > 0, F.substring_index(v, KEY_SEP, -1))

    def compatible(x: Column, y: Column) -> Column:
        # A swap is held to the tolerance of first names on both sides: "Brown Samuel" and
        # "Samuel Brosn" are one person's names, swapped and mistyped once (both errors are
        # common in typed records; measured on the generated register, where exact swaps
        # only split such pairs).
        # Only between two full names: a missing last name ("" or null) is a prefix of any
        # name, and would make every first name a swap of every other.
        both_full = (F.length(last(x)) > 0) & (F.length(last(y)) > 0)
        swapped = both_full & same(first(x), last(y)) & same(last(x), first(y))
        return same(first(x), first(y)) | F.coalesce(swapped, F.lit(False))

    return F.exists(values, lambda x: F.exists(values, lambda y: ~compatible(x, y)))


def dates_conflict(values: Column, rule: DateConflict) -> Column:
    """Whether an array of ``yyyy-MM-dd`` dates holds two that are not one date mistyped
    (see :class:`DateConflict`)."""

    def compatible(x: Column, y: Column) -> Column:
        out = (x == y) | (F.levenshtein(x, y) <= rule.max_edits)
        if rule.transposed:
            out = out | (
                (F.substring(x, 1, 4) == F.substring(y, 1, 4))
                & (F.substring(x, 6, 2) == F.substring(y, 9, 2))
                & (F.substring(x, 9, 2) == F.substring(y, 6, 2))
            )
        return out

    return F.exists(values, lambda x: F.exists(values, lambda y: ~compatible(x, y)))


def same_name(rule: NameConflict) -> Callable[[Column, Column], Column]:
    """``same(x, y)``: whether two folded names can be one person's (see NameConflict).

    A known form matches with a typo too: "Thoams" is a typo of Thomas, so it can be the
    name of a "Tom"; but only by edits, not by prefix, or "Christine" would match
    "Christopher" through "Chris".
    """
    forms_of: dict[str, set[str]] = {}
    for group in name_groups(rule.nicknames):
        for form in group:
            forms_of.setdefault(form, set()).update(group)
    known = (
        map_of_lists_literal({k: sorted(forms) for k, forms in forms_of.items()})
        if forms_of
        else None
    )

    def near(x: Column, y: Column) -> Column:
        return (F.least(F.length(x), F.length(y)) >= rule.min_length) & (
            F.levenshtein(x, y) <= rule.max_edits
        )

    def same(x: Column, y: Column) -> Column:
        out = (x == y) | x.startswith(y) | y.startswith(x) | near(x, y)
        if known is not None:
            forms_x = F.coalesce(F.try_element_at(known, x), F.array().cast("array<string>"))
            forms_y = F.coalesce(F.try_element_at(known, y), F.array().cast("array<string>"))
            out = (
                out
                | F.exists(forms_y, lambda f: (f == x) | near(x, f))
                | F.exists(forms_x, lambda f: near(f, y))
            )
        return out

    return same


def name_groups(nicknames: Mapping[str, Sequence[str]]) -> list[set[str]]:
    """Folded forms of each nickname entry (the name and its other forms)."""
    groups = []
    for name, forms in sorted(nicknames.items()):
        group = {fold_key_py(f) for f in [name, *forms]} - {""}
        if len(group) > 1:
            groups.append(group)
    return groups
