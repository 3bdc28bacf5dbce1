"""Customer lifetime value: buy-till-you-die (BTYD) models of purchase frequency, dropout and
spend, fitted with PyMC-Marketing's CLV module.

* ``rfm``: the per-customer summary the models read (frequency, recency, T, mean spend of the
  repeat purchase days), computed in Spark before ``as_of``;
* ``fit``: BG/NBD and Gamma-Gamma fitted on a bounded, seeded sample of that summary in the
  driver (MAP by default), giving a small set of parameters;
* ``score``: every customer scored on the executors (``mapInPandas``) with the library's own
  prediction functions, from the broadcast parameters;
* ``stage``: the ``value`` stage, gold/customer_value at ``as_of``, the fitted model in MLflow.

The propensity models use the same fit for their BTYD features
(:func:`cdp.models.features_stage.parts_of`).

PyMC-Marketing is the optional extra ``clv`` (in ``dev`` too). Without it the ``value`` stage
writes an empty table and says so, and the BTYD features stay empty (left out of the models).

This package's ``__init__`` stays free of imports: ``cdp.config`` loads ``value.settings``
without Spark.
"""
