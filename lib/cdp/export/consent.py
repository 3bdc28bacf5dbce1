"""Consent at export time, per exported address, from ``silver/consents``.

The audiences stage selects members with the consents of the profile's last run; by the time
the export runs, a person may have withdrawn. The export therefore reads the statements
themselves, as silver holds them now, and decides for each address it is about to deliver:

* a statement that names an e-mail address or a phone number speaks for that address only, so
  a grant given for one address does not export the customer's other address; it is matched on
  the address itself, so it counts even before identity has linked it to anyone;
* a statement that names no address (only a CRM or account id) speaks for every address of the
  customer it belongs to: the customer of its record in ``gold/identity_map``, or the customer
  whose identifiers (``gold/identity_identifiers``) hold its CRM or account id;
* for each address, the latest of the statements that speak for it (for the audience's purpose
  and channel, or ``all``) decides, ordered as in :mod:`cdp.privacy.consent` (latest wins, a
  withdrawal wins a tie, an unknown statement is a withdrawal). No statement means no consent.

Addresses are compared in the export's own normal form (:mod:`cdp.export.identifiers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp import tables as T
from cdp.export.identifiers import normalize_email, normalize_phone
from cdp.privacy.consent import applies, granted, statement_order
from cdp.profile.aggregates import live
from cdp.silver.model import CONSENTS
from cdp.storage import TableStore

CONSENTED = "_consented"
_ORDER = "_order"
# The identity types a statement without an address is matched on (its own columns).
_ACCOUNT_IDS = {"crm_id": "crm_id", "customer_id": "customer_id"}


@dataclass(frozen=True)
class ConsentInputs:
    """What the check reads: the statements, and what links an address-less one to a customer
    (either may be missing; an unlinked statement then speaks for nobody)."""

    statements: DataFrame | None
    identity_map: DataFrame | None
    identifiers: DataFrame | None


def read_consent_inputs(store: TableStore) -> ConsentInputs:
    """The current ``silver/consents``, ``gold/identity_map`` and ``gold/identity_identifiers``
    (None for a table that does not exist yet)."""

    def maybe(name: str) -> DataFrame | None:
        return store.read(name) if store.exists(name) else None

    return ConsentInputs(
        statements=maybe(T.CONSENTS.name),
        identity_map=maybe(T.IDENTITY_MAP.name),
        identifiers=maybe(T.IDENTITY_IDENTIFIERS.name),
    )


def _column(df: DataFrame, name: str) -> Column:
    return F.col(name) if name in df.columns else F.lit(None).cast("string")


def relevant_statements(statements: DataFrame, purpose: str, channel: str) -> DataFrame:
    """Live statements for (``purpose``, ``channel``) with their addresses normalized and their
    :func:`statement_order` in ``_order``."""
    rows = live(statements).where(applies(F.col("purpose"), F.col("channel"), purpose, channel))
    return rows.select(
        _column(rows, "source").alias("source"),
        _column(rows, "source_record_id").alias("source_record_id"),
        normalize_email(_column(rows, "email")).alias("_email"),
        normalize_phone(_column(rows, "phone")).alias("_phone"),
        *[_column(rows, c).cast("string").alias(f"_{c}") for c in _ACCOUNT_IDS],
        statement_order(F.col("consent_time"), F.col("status")).alias(_ORDER),
    )


def _latest(df: DataFrame, key: str, alias: str) -> DataFrame:
    return df.where(F.col(key).isNotNull()).groupBy(key).agg(F.max(_ORDER).alias(alias))


def _customer_wide(stmts: DataFrame, inputs: ConsentInputs) -> DataFrame | None:
    """``customer_id, _customer_order``: the latest address-less statement per customer."""
    wide = stmts.where(F.col("_email").isNull() & F.col("_phone").isNull())
    linked: list[DataFrame] = []
    if inputs.identity_map is not None:
        links = inputs.identity_map.where(F.col("record_table") == CONSENTS.name)
        linked.append(
            wide.join(
                links.select("source", "source_record_id", "customer_id"),
                ["source", "source_record_id"],
            ).select("customer_id", _ORDER)
        )
    if inputs.identifiers is not None:
        for column, id_type in _ACCOUNT_IDS.items():
            ids = inputs.identifiers.where(F.col("id_type") == id_type).select(
                "customer_id", F.col("id_value").alias(f"_{column}")
            )
            linked.append(wide.join(ids, f"_{column}").select("customer_id", _ORDER))
    if not linked:
        return None
    out = linked[0]
    for frame in linked[1:]:
        out = out.unionByName(frame)
    return out.groupBy("customer_id").agg(F.max(_ORDER).alias("_customer_order"))


def consented_contacts(
    inputs: ConsentInputs, purpose: str, channel: str
) -> Callable[[DataFrame], DataFrame]:
    """Members (``customer_id, email, phone``, one row per customer) -> the same rows with
    ``email`` and ``phone`` set to null where that address holds no consent now, and
    ``_consented``: whether any address is left to deliver."""

    def transform(members: DataFrame) -> DataFrame:
        if inputs.statements is None:
            none = F.lit(None).cast("string")
            return members.withColumns({"email": none, "phone": none, CONSENTED: F.lit(False)})
        stmts = relevant_statements(inputs.statements, purpose, channel)
        out = (
            members.withColumn("_email", normalize_email(F.col("email")))
            .withColumn("_phone", normalize_phone(F.col("phone")))
            .join(_latest(stmts, "_email", "_email_order"), "_email", "left")
            .join(_latest(stmts, "_phone", "_phone_order"), "_phone", "left")
        )
        wide = _customer_wide(stmts, inputs)
        if wide is not None:
            out = out.join(wide, "customer_id", "left")
        else:
            out = out.withColumn("_customer_order", F.lit(None).cast(stmts.schema[_ORDER].dataType))

        def ok(address: str) -> Column:
            # greatest() skips nulls: the latest of the address's and the customer's statements.
            latest = F.greatest(F.col(f"_{address}_order"), F.col("_customer_order"))
            return F.col(f"_{address}").isNotNull() & granted(latest)

        return (
            out.withColumn("_email_ok", ok("email"))
            .withColumn("_phone_ok", ok("phone"))
            .withColumn("email", F.when(F.col("_email_ok"), F.col("email")))
            .withColumn("phone", F.when(F.col("_phone_ok"), F.col("phone")))
            .withColumn(CONSENTED, F.col("_email_ok") | F.col("_phone_ok"))
            .drop(
                "_email",
                "_phone",
                "_email_order",
                "_phone_order",
                "_customer_order",
                "_email_ok",
                "_phone_ok",
            )
        )

    return transform
