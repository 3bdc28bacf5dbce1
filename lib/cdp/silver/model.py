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
        # A birth year recorded alone (voter files, surveys): four digits, compared by
        # identity matching only where a pair lacks a full birth date on either side.
        "birth_year",
        # Where the person was born (registers, KYC exports): a place name, compared by
        # identity matching like a city, never read as where they live.
        "birth_place",
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

# The Spark SQL type of each field silver writes that is not text (the standardizers parse
# them: times, dates, money); every other canonical field is a string.
FIELD_TYPES: dict[str, str] = {
    "event_time": "timestamp",
    "order_time": "timestamp",
    "consent_time": "timestamp",
    "updated_at": "timestamp",
    "birth_date": "date",
    "amount": "decimal(18,2)",
}
# Columns every silver table has besides its fields (who sent the record, tombstone, extras).
COMMON_COLUMNS: tuple[tuple[str, str], ...] = (
    ("source", "string"),
    ("is_deleted", "boolean"),
    ("attributes", "map<string,string>"),
)


def empty_schema_ddl(table: CanonicalTable) -> str:
    """The DDL (``"source string, ..."``) of ``table``'s canonical columns, for an empty frame
    that stands in for a silver table that does not exist: downstream code then reads the
    same columns and types it would read from a real one, and finds no rows."""
    columns = [COMMON_COLUMNS[0], *((f, FIELD_TYPES.get(f, "string")) for f in table.fields)]
    columns += COMMON_COLUMNS[1:]
    return ", ".join(f"{name} {dtype}" for name, dtype in columns)


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
