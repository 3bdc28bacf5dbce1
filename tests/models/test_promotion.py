"""The promotion rule (the heuristic out of time, then the champion on the holdout), the
out-of-time check's history guard, and the report's out-of-time line: no Spark."""

from __future__ import annotations

from datetime import date, datetime
from types import SimpleNamespace

import pytest

from cdp.models.heuristic_fallback import best_free_scorer
from cdp.models.out_of_time import OutOfTime, earlier_as_of, history_gap
from cdp.models.promotion import decide
from cdp.models.report_section import MEASURE_HEADERS, models_section
from cdp.models.settings import ModelsConfig, ModelSpec
from cdp.models.train import Evaluation
from cdp.models.train_record import BTYD_HOLDOUT, HEURISTIC_HOLDOUT, HOLDOUT
from cdp.models.train_stage import log_run_metrics
from cdp.report_runs import RunRow
from cdp.runlog import RunRecorder


def _ev(roc: float, pr: float, log_loss: float | None = 0.4) -> Evaluation:
    return Evaluation(1000, 200, roc, pr, log_loss, 2.0, 0.2)


HEURISTIC = _ev(0.771, 0.496, None)


def test_a_candidate_below_the_heuristic_out_of_time_is_not_promoted() -> None:
    """The issue's numbers: better on the hash holdout than the heuristic, worse out of time."""
    got = decide(
        holdout=_ev(0.80, 0.52),
        heuristic=HEURISTIC,
        settings=ModelsConfig(),
        out_of_time=_ev(0.749, 0.470),
    )
    assert not got.promote and got.alias == "challenger" and got.loses_to_heuristic
    assert got.reason.startswith("loses to the heuristic out of time: roc_auc 0.7490 < heuristic")
    assert "pr_auc 0.4700" in got.reason


def test_pr_auc_gates_too_unless_left_out_of_the_gate_metrics() -> None:
    oot = _ev(0.78, 0.45)  # ahead on ROC-AUC, behind on PR-AUC
    both = decide(
        holdout=_ev(0.8, 0.5), heuristic=HEURISTIC, settings=ModelsConfig(), out_of_time=oot
    )
    assert not both.promote and "pr_auc" in both.reason and "roc_auc" not in both.reason
    roc_only = ModelsConfig.model_validate({"out_of_time": {"gate_metrics": ["roc_auc"]}})
    got = decide(holdout=_ev(0.8, 0.5), heuristic=HEURISTIC, settings=roc_only, out_of_time=oot)
    assert got.promote and got.alias == "champion" and "no champion yet" in got.reason


def test_a_margin_over_the_heuristic_can_be_required() -> None:
    settings = ModelsConfig.model_validate({"out_of_time": {"min_margin": 0.015}})
    oot = _ev(0.78, 0.52)  # ahead of the heuristic, by less than the margin on ROC-AUC
    got = decide(holdout=_ev(0.8, 0.55), heuristic=HEURISTIC, settings=settings, out_of_time=oot)
    assert not got.promote and got.loses_to_heuristic and "+ 0.015" in got.reason


def test_bg_nbd_alone_gates_like_the_heuristic_where_the_features_carry_a_fit() -> None:
    """Seed 1 of the generated benchmark (issue 26): the model beat the heuristic out of time
    but not BG/NBD's expected purchases alone on PR-AUC."""
    model_oot, heuristic, btyd = _ev(0.8406, 0.4583), _ev(0.7618, 0.4573), _ev(0.7712, 0.4844)
    args = {"holdout": _ev(0.83, 0.47), "heuristic": heuristic, "out_of_time": model_oot}
    got = decide(settings=ModelsConfig(), btyd=btyd, **args)
    assert not got.promote and got.loses_to_heuristic
    assert (
        got.reason == "loses to the BG/NBD alone out of time: pr_auc 0.4583 < BG/NBD alone 0.4844"
    )
    no_fit = decide(settings=ModelsConfig(), btyd=None, **args)
    assert no_fit.promote and "not below the heuristic out of time" in no_fit.reason
    off = ModelsConfig.model_validate({"out_of_time": {"btyd_gate": False}})
    assert decide(settings=off, btyd=btyd, **args).promote
    ahead = decide(settings=ModelsConfig(), btyd=_ev(0.77, 0.45), **args)
    assert ahead.promote and "not below the heuristic and BG/NBD alone out of time" in ahead.reason


def test_the_fallback_serves_the_better_free_scorer() -> None:
    spec, settings = ModelSpec(name="purchase_90d", label="purchase"), ModelsConfig()
    heuristic = _ev(0.76, 0.45)
    assert best_free_scorer(spec, settings, heuristic, None).name == "heuristic"
    assert best_free_scorer(spec, settings, heuristic, _ev(0.75, 0.5)).name == "heuristic"
    btyd = best_free_scorer(spec, settings, heuristic, _ev(0.77, 0.44))  # selection: ROC-AUC
    assert btyd.name == "bg/nbd" and btyd.inputs == ("btyd_expected_purchases_90d",)
    assert btyd.rank_sql == "coalesce(cast(btyd_expected_purchases_90d AS DOUBLE), 0D)"
    churn = ModelSpec(name="churn_90d", label="churn", population="active")
    assert best_free_scorer(churn, settings, heuristic, _ev(0.77, 0.44)).rank_sql.startswith("(-")


def test_without_the_check_the_holdout_is_the_evidence() -> None:
    loses = decide(holdout=_ev(0.75, 0.52), heuristic=HEURISTIC, settings=ModelsConfig())
    assert not loses.promote and loses.reason.startswith("loses to the heuristic on the holdout")
    wins = decide(holdout=_ev(0.80, 0.52), heuristic=HEURISTIC, settings=ModelsConfig())
    assert wins.promote


def test_the_champion_gate_stays_on_the_holdout() -> None:
    settings = ModelsConfig()
    args = {"heuristic": HEURISTIC, "settings": settings, "out_of_time": _ev(0.79, 0.51)}
    kept = decide(holdout=_ev(0.80, 0.52), champion=_ev(0.80, 0.5), champion_version="3", **args)
    assert not kept.promote and not kept.loses_to_heuristic  # a tie keeps the champion
    assert "does not beat the champion" in kept.reason and "champion v3 0.8000" in kept.reason
    beats = decide(holdout=_ev(0.81, 0.52), champion=_ev(0.80, 0.5), champion_version="3", **args)
    assert beats.promote and "not below the heuristic out of time" in beats.reason


def test_the_check_fits_one_horizon_earlier_and_needs_history_before_it() -> None:
    settings = ModelsConfig()  # 90-day horizon
    assert earlier_as_of(date(2025, 3, 1), settings) == date(2024, 12, 1)
    assert history_gap(date(2024, 1, 1), date(2024, 12, 1)) is None
    assert "history starts 2024-12-01" in (history_gap(date(2024, 12, 1), date(2024, 12, 1)) or "")
    assert history_gap(None, date(2024, 12, 1)) == "no transactions"


def _page(metrics: dict[str, float], **kw: object) -> str:
    recorder = RunRecorder("r1", "train", "test", "h", "delta-rs", datetime(2026, 1, 1))
    ctx = SimpleNamespace(run=recorder)
    logged = SimpleNamespace(run_id="", version="4")  # no MLflow run: no charts to fetch
    log_run_metrics(ctx, SimpleNamespace(name="model_a"), metrics, logged, "challenger", 1.0, **kw)  # type: ignore[arg-type]
    run = RunRow(
        "train", "test", "success", "r1", None, 1.0, None, {}, {}, {}, recorder.metrics, None
    )
    config = SimpleNamespace(mlflow_tracking_uri="sqlite:///unused.db")
    return "".join(models_section(config, {"train": (run, 0)}).parts)  # type: ignore[arg-type]


def test_the_report_shows_the_out_of_time_line_next_to_the_holdout_line() -> None:
    """Logged through the train stage's code, read through the report's."""
    model, heuristic, champion = _ev(0.759, 0.48), HEURISTIC, _ev(0.76, 0.49)
    btyd = _ev(0.765, 0.5)  # BG/NBD alone: one column (fitted before as_of)
    oot = OutOfTime(date(2024, 12, 1), _ev(0.749, 0.47), heuristic, champion, btyd=btyd)
    metrics = {
        **model.metrics(HOLDOUT),
        **heuristic.metrics(HEURISTIC_HOLDOUT),
        **btyd.metrics(BTYD_HOLDOUT),
        **oot.metrics(),
    }
    assert oot.metrics()["btyd_oot_roc_auc"] == pytest.approx(0.765)
    decision = decide(
        holdout=model, heuristic=heuristic, settings=ModelsConfig(), out_of_time=oot.model
    )
    page = _page(metrics, decision=decision, out_of_time=oot, fallback_version="5")
    assert all(h in page for h in MEASURE_HEADERS)
    cells = ["0.7590", "0.7710", "0.7650", "0.7490", "0.7710", "0.7600"]  # holdout, then OOT
    assert (
        "<tr><td>model_a</td><td>ROC-AUC</td>"
        + "".join(f"<td class='num'>{c}</td>" for c in cells)
        + "</tr>"
    ) in page
    assert "fitted at 2024-12-01" in page
    assert "version 4 is challenger: loses to the heuristic out of time: roc_auc 0.7490" in page
    assert "version 5 (the heuristic) is the champion" in page
    bg_nbd = _page(metrics, decision=decision, out_of_time=oot, fallback_version="5",
                   fallback_scorer="BG/NBD alone")  # fmt: skip
    assert "so BG/NBD alone scores: version 5 (BG/NBD alone) is the champion" in bg_nbd


def test_the_report_says_when_the_check_was_skipped() -> None:
    why = "the history starts 2024-12-01; a fit at 2024-12-01 needs purchases before that date"
    page = _page(
        {**_ev(0.8, 0.5).metrics(HOLDOUT)}, out_of_time=OutOfTime(date(2024, 12, 1), skipped=why)
    )
    assert f"out-of-time check skipped: {why}." in page
    assert "<td class='num'>0.8000</td><td class='none'>-</td><td class='none'>-</td>" in page
