"""The ``features`` stage, and the features every other model stage reads through it:
gold/customer_features at one ``as_of``, built and stored when that slice is missing.

The table keeps every feature column whatever inputs exist (one schema for every company);
which of them a model may use is :func:`left_out_features`' business."""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp import tables as T
from cdp.models.features import (
    AS_OF,
    attributed_orders,
    feature_inputs,
    feature_parts,
    join_features,
)
from cdp.models.inputs import AS_OF_METRIC, Inputs, read_inputs, replace_rows, settings_of
from cdp.models.settings import ModelsConfig
from cdp.stage import StageContext
from cdp.value.features import fit_for_features
from cdp.value.fit import BtydFit

FEATURES_TABLE = T.CUSTOMER_FEATURES.name


def parts_of(
    inputs: Inputs, as_of: date, settings: ModelsConfig, btyd: BtydFit | None = None
) -> dict[str, DataFrame]:
    """The feature parts (:func:`cdp.models.features.feature_parts`) of ``inputs``; the
    schema is the same with or without ``btyd`` (only its columns' values differ)."""
    f = inputs.frames
    return feature_parts(
        transactions=f["transactions"],
        events=f["events"],
        consents=f["consents"],
        persons=f["persons"],
        identity_map=f["identity_map"],
        identifiers=f["identifiers"],
        as_of=as_of,
        settings=settings,
        btyd=btyd,
    )


def compute_features(
    inputs: Inputs, as_of: date, settings: ModelsConfig, btyd: BtydFit | None = None
) -> DataFrame:
    """The features of every customer at ``as_of`` (not stored)."""
    return join_features(parts_of(inputs, as_of, settings, btyd), as_of)


def left_out_features(inputs: Inputs, as_of: date, settings: ModelsConfig) -> list[str]:
    """The feature columns that come from an optional input without rows (missing, or
    empty): they hold only zeros and nulls that say nothing about anyone, so training leaves
    them out and the model's own feature list never names them."""
    empty = inputs.without_rows()
    if not empty:
        return []
    by_input = feature_inputs(parts_of(inputs, as_of, settings))
    return sorted({c for key in empty for c in by_input[key]})


def write_features(ctx: StageContext, inputs: Inputs, as_of: date) -> int:
    """Build the features at ``as_of`` and replace that partition; return the row count.

    The BTYD features come from a BG/NBD fitted here on the transactions before ``as_of``."""
    settings = settings_of(ctx)
    f = inputs.frames
    btyd, said = fit_for_features(
        attributed_orders(f["transactions"], f["identity_map"]), as_of, ctx.config.value
    )
    ctx.progress(said)
    df = compute_features(inputs, as_of, settings, btyd)
    result = replace_rows(ctx, FEATURES_TABLE, df, f"{AS_OF} = DATE'{as_of.isoformat()}'")
    rows = result.rows_written
    ctx.run.wrote(FEATURES_TABLE, rows)
    ctx.progress(f"{FEATURES_TABLE}: {rows:,} customers at as_of {as_of}")
    return rows


def features_at(ctx: StageContext, inputs: Inputs, as_of: date) -> DataFrame:
    """gold/customer_features at ``as_of``, built first when the partition is missing."""

    def stored() -> DataFrame:
        return ctx.store.read(FEATURES_TABLE).where(
            F.col(AS_OF) == F.lit(as_of.isoformat()).cast("date")
        )

    if not ctx.store.exists(FEATURES_TABLE) or stored().limit(1).count() == 0:
        ctx.progress(f"no features at {as_of} yet: building them")
        write_features(ctx, inputs, as_of)
    return stored()


def run_features(ctx: StageContext) -> None:
    """The ``features`` stage: gold/customer_features at ``as_of`` (default data end + 1)."""
    inputs = read_inputs(ctx)
    as_of = ctx.as_of or inputs.data_end() + timedelta(days=1)
    ctx.run.metric(AS_OF_METRIC, as_of.isoformat())
    write_features(ctx, inputs, as_of)
