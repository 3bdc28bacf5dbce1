"""``python -m cdp.value.warm``: fits and scores both BTYD models on a synthetic sample."""

from __future__ import annotations

import math

from cdp.value.warm import warm_compile_cache


def test_warm_up_fits_and_scores_both_models() -> None:
    # It raises when either model fails to fit or score; the seconds are what CI prints.
    seconds = warm_compile_cache(customers=120, seed=3)
    assert math.isfinite(seconds) and seconds > 0
