"""What a consent statement means, in one place: the condition the audiences, the profile's
flags, the export and the notebooks all apply.

Consent fails closed. Silver keeps a statement it cannot read (status or purpose outside the
vocabulary, a time that does not parse) as the *unknown* status instead of quarantining it
(:mod:`cdp.silver.consent_rules`): an unknown statement is a withdrawal, an unrecognised purpose
or channel widens to :data:`ANY` (it may have been about anything), and a time that does not
parse becomes the time silver processed it, so it is newer than every grant made before it
arrived. Only a valid grant made after it counts again.

The ordering of statements is the same everywhere: the latest time wins, and at equal times a
withdrawal beats a grant (two statements that cannot be ordered read as "no").
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F

GRANTED = "granted"
WITHDRAWN = "withdrawn"
# The "denied/unknown" state: a statement silver could not read. Never a grant.
UNKNOWN = "unknown"
# A purpose or channel that covers every purpose or channel.
ANY = "all"

# Older than any real consent: a statement without a time loses to every dated one.
_EPOCH = "1970-01-01 00:00:00"


def applies(purpose_col: Column, channel_col: Column, purpose: str, channel: str) -> Column:
    """Whether a statement about (``purpose_col``, ``channel_col``) speaks to (``purpose``,
    ``channel``): the same values, or :data:`ANY` in either."""
    return purpose_col.isin(purpose, ANY) & channel_col.isin(channel, ANY)


def is_grant(status: Column, granted_statuses: Sequence[str] | None = None) -> Column:
    """Whether ``status`` grants: ``granted`` (what silver writes), or, for readers configured
    with their own vocabulary, any of ``granted_statuses`` (case-insensitive). Null is false."""
    if granted_statuses is None:
        test = status == F.lit(GRANTED)
    else:
        test = F.lower(status).isin(*[s.lower() for s in granted_statuses])
    return F.coalesce(test, F.lit(False))


def statement_order(
    time: Column, status: Column, granted_statuses: Sequence[str] | None = None
) -> Column:
    """A sortable ``struct<t, withheld>``: the larger one is the statement that counts (later,
    and at the same time a withdrawal). ``withheld`` is true for every status but a grant."""
    return F.struct(
        F.coalesce(time, F.lit(_EPOCH).cast("timestamp")).alias("t"),
        (~is_grant(status, granted_statuses)).alias("withheld"),
    )


def granted(latest: Column) -> Column:
    """True when the latest :func:`statement_order` struct is a grant; no statement (null)
    means no consent (false, never null)."""
    return F.coalesce(~latest["withheld"], F.lit(False))


def consent_granted(
    consents: Column,
    purpose: str,
    channel: str,
    granted_statuses: Sequence[str] | None = None,
) -> Column:
    """True when the latest consent for ``purpose`` on ``channel`` in an
    ``array<struct<purpose, channel, status, consent_time, ...>>`` is ``granted``; statements
    on channel or purpose :data:`ANY` count for every channel or purpose.

    No matching consent means no consent (false, never null). At equal times a withdrawal
    wins over a grant: when two statements cannot be ordered, the safe reading is "no".
    """
    relevant = F.filter(consents, lambda c: applies(c["purpose"], c["channel"], purpose, channel))
    latest = F.array_max(
        F.transform(
            relevant,
            lambda c: statement_order(c["consent_time"], c["status"], granted_statuses),
        )
    )
    return granted(latest)
