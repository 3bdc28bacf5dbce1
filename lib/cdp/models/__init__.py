"""Propensity models: point-in-time features, labels, training with MLflow, batch scoring.

The four stages, one module each (the pure pieces they share live beside them: ``features``,
``labels``, ``train``, ``score``, ``registry``):

* ``features_stage``: gold/customer_features at ``as_of`` or data end + 1 day (features of
  "now");
* ``train_stage``: ``as_of`` or data end + 1 - ``horizon_days`` (the latest date whose label
  horizon the data covers; a later ``as_of`` is refused while
  ``labels.require_complete_horizon``); its out-of-time check (``out_of_time``) fits the
  winner's configuration again at ``as_of - horizon_days`` and scores the holdout customers
  at ``as_of``; a candidate below the heuristic there is never champion (``promotion``), and
  where no model has earned the alias the heuristic takes it (``heuristic_fallback``);
* ``score_stage``: ``as_of`` or the newest ``as_of`` in gold/customer_features (else data
  end + 1);
* ``backtest_stage`` (on demand): scores at ``as_of`` (default like ``train``) with a model
  trained at ``as_of - backtest.train_offset_days`` (default ``horizon_days``), evaluated
  against what happened in the horizon after ``as_of``; the model is logged to MLflow but not
  registered.

Every date default comes from the data, not the clock, so reruns on the same data are
reproducible: ``data end`` is the date of the newest transaction or event in silver
(``inputs``). ``train`` and ``score`` use the features already in gold/customer_features for
their ``as_of``, and build (and store) them when that partition is missing.

Select one model with ``--model NAME`` (``--set models.only=NAME``).

This package's ``__init__`` stays free of imports: ``cdp.config`` loads ``models.settings``
without Spark.
"""
