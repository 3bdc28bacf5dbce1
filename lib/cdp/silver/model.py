"""The canonical silver model as data: the four tables every source maps onto, their fields
and the field that orders a record's versions. Free of Spark, so configuration checks
(``cdp.sources``) can use it without a session."""

from __future__ import annotations

from dataclasses import dataclass

from cdp import tables as T


@dataclass(frozen=True)
class CanonicalTable:
    name: str
    fields: tuple[str, ...]
    time_field: str  # the record's event or modification time, which orders its versions

    @property
    def table(self) -> str:
        return T.silver_table(self.name)


PERSON_RECORDS = CanonicalTable(
    "person_records",
    (
        "source_record_id",
        "crm_id",
        "loyalty_id",
        "customer_id",
        "anonymous_id",
        "device_id",
        "email",
        "phone",
        "first_name",
        "last_name",
        "full_name",
        "birth_date",
        "gender",
        "address_line1",
        "city",
        "postcode",
        "country",
        "updated_at",
    ),
    "updated_at",
)
EVENTS = CanonicalTable(
    "events",
    (
        "source_record_id",
        "event_type",
        "event_time",
        "anonymous_id",
        "device_id",
        "customer_id",
        "email",
        "phone",
        "channel",
        "campaign_id",
        "properties",
    ),
    "event_time",
)
TRANSACTIONS = CanonicalTable(
    "transactions",
    (
        "source_record_id",
        "order_id",
        "customer_id",
        "crm_id",
        "loyalty_id",
        "email",
        "phone",
        # The payer's name: an order's billing name, the cardholder printed on a receipt.
        "first_name",
        "last_name",
        "full_name",
        "amount",
        "currency",
        "order_time",
        "items",
        "channel",
        "store_id",
    ),
    "order_time",
)
CONSENTS = CanonicalTable(
    "consents",
    (
        "source_record_id",
        "email",
        "phone",
        "crm_id",
        "customer_id",
        "purpose",
        "channel",
        "status",
        "consent_time",
    ),
    "consent_time",
)

TABLES: dict[str, CanonicalTable] = {
    t.name: t for t in (PERSON_RECORDS, EVENTS, TRANSACTIONS, CONSENTS)
}
# The canonical table of each source kind (``SourceKind`` values). 'other' sources (support
# tickets, surveys) are interactions: they become events whose type is the source name, with
# their free fields in `attributes`.
TABLE_FOR_KIND_NAME: dict[str, CanonicalTable] = {
    "profile": PERSON_RECORDS,
    "event": EVENTS,
    "transaction": TRANSACTIONS,
    "consent": CONSENTS,
    "other": EVENTS,
}
