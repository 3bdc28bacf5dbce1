"""The calendar of a generated data set: data window, delivery drops and label cutoffs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

DAY = 86_400
YEAR = 365.25 * DAY


def _epoch(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp())


@dataclass(frozen=True)
class Timeline:
    """Dates of one generated data set.

    Data covers ``start``..``end`` (inclusive). Drop 1 is the initial export of everything
    before ``drop1`` (midnight UTC); drop 2 is the incremental export of what happened from
    ``drop1`` to the end, delivered the day after ``end``. Labels look ``horizon_days`` ahead
    of each cutoff: ``[cutoff, cutoff + horizon)``.
    """

    start: date
    end: date
    drop1: date
    drop2: date
    train_cutoff: date
    scoring_cutoff: date
    horizon_days: int

    @classmethod
    def build(cls, start_date: str, end_date: str, horizon_days: int = 90) -> Timeline:
        start = date.fromisoformat(start_date)
        end = date.fromisoformat(end_date)
        if (end - start).days < 400:
            raise ValueError(
                f"start_date..end_date must span at least 400 days to hold a year of history "
                f"before the train cutoff and two label horizons, got {start}..{end}"
            )
        # Initial export about six months before the end, as in a typical onboarding.
        drop1 = end - timedelta(days=184)
        return cls(
            start=start,
            end=end,
            drop1=drop1,
            drop2=end + timedelta(days=1),
            train_cutoff=end - timedelta(days=2 * horizon_days),
            scoring_cutoff=end - timedelta(days=horizon_days),
            horizon_days=horizon_days,
        )

    @property
    def start_ts(self) -> int:
        return _epoch(self.start)

    @property
    def end_ts(self) -> int:
        """Exclusive end: midnight after ``end``."""
        return _epoch(self.end) + DAY

    @property
    def drop1_ts(self) -> int:
        return _epoch(self.drop1)

    @property
    def drops(self) -> tuple[str, str]:
        """Drop labels, as used in directory names ``drop=<label>``."""
        return (self.drop1.isoformat(), self.drop2.isoformat())
