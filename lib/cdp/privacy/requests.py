"""Privacy requests as data: ``ops/privacy_requests``.

A request comes from ``cdp forget`` or from the ``privacy_requests`` landing source
(``<landing>/privacy_requests/*.csv`` with columns ``email, phone, customer_id, type,
received_at``); both become the same rows. A row holds the subject only as keyed pseudonyms
(HMAC-SHA256 under the ``subject`` sub-key of the privacy key) of its normalized identifiers,
never the identifiers themselves, so the table can be kept as long as the proof must be.

The request id is a hash of the subject pseudonyms, the type and the received time (no uuid):
the same request submitted twice, or a landing file read twice, is one row.
"""

from __future__ import annotations

import csv
import hashlib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pyspark.sql.types import MapType, StringType, StructField, StructType, TimestampType

from cdp import tables as T
from cdp.errors import ConfigError
from cdp.privacy.keys import derive_key, pseudonym

REQUESTS_TABLE = T.PRIVACY_REQUESTS.name
REQUEST_TYPES = ("erase", "suppress", "unsuppress")
DEFAULT_DEADLINE_DAYS = 30  # GDPR Art. 12(3): one month
LANDING_SOURCE = "privacy_requests"
SUBJECT_PURPOSE = "subject"

REQUESTS_SCHEMA = StructType(
    [
        StructField("request_id", StringType()),
        StructField("received_at", TimestampType()),
        StructField("type", StringType()),
        StructField("origin", StringType()),  # cli | landing
        StructField("subject_email", StringType()),  # keyed pseudonyms only
        StructField("subject_phone", StringType()),
        StructField("subject_customer_id", StringType()),
        StructField("deadline", TimestampType()),
        StructField("status", StringType()),  # open | done
        StructField("layers", MapType(StringType(), StringType())),  # layer -> pending|done|...
        StructField("completed_at", TimestampType()),
        StructField("run_id", StringType()),
    ]
)


def subject_key(privacy_key: bytes) -> bytes:
    """The sub-key of request subjects and the suppression list."""
    return derive_key(privacy_key, SUBJECT_PURPOSE)


def normalize_email(value: str) -> str | None:
    """What silver's ``standardize_email`` makes of an address (NFKC, trimmed, lower-cased,
    ``mailto:`` and ``<...>`` removed); None when nothing is left."""
    text = unicodedata.normalize("NFKC", value).strip().lower()
    if text.startswith("mailto:"):
        text = text[len("mailto:") :]
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    text = text.strip()
    return text if "@" in text else None


def normalize_phone(value: str, region: str | None = None) -> str | None:
    """E.164, as silver's ``standardize_phone`` (the same ``phonenumbers`` parse)."""
    from cdp.silver.std_phone import phone_to_e164

    return phone_to_e164(unicodedata.normalize("NFKC", value), region)


@dataclass(frozen=True)
class Subject:
    """A request's subject as given (raw; only ever held in memory)."""

    email: str | None = None
    phone: str | None = None
    customer_id: str | None = None
    type: str = "erase"
    received_at: datetime | None = None
    phone_region: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def request_row(
    key: bytes,
    subject: Subject,
    *,
    origin: str,
    deadline_days: int = DEFAULT_DEADLINE_DAYS,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One ``ops/privacy_requests`` row: pseudonyms only (raises on an unusable subject)."""
    if subject.type not in REQUEST_TYPES:
        raise ConfigError(f"privacy request: type must be one of {', '.join(REQUEST_TYPES)}")
    email = normalize_email(subject.email) if subject.email else None
    phone = normalize_phone(subject.phone, subject.phone_region) if subject.phone else None
    if subject.email and email is None:
        raise ConfigError("privacy request: the e-mail address is not an address")
    if subject.phone and phone is None:
        raise ConfigError(
            "privacy request: the phone number does not parse (give it in international "
            "form, +CC..., or pass the region)"
        )
    cid = (subject.customer_id or "").strip() or None
    if not (email or phone or cid):
        raise ConfigError("privacy request: give an e-mail, a phone or a customer id")
    skey = subject_key(key)
    p_email = pseudonym(skey, email) if email else None
    p_phone = pseudonym(skey, phone) if phone else None
    p_cid = pseudonym(skey, cid) if cid else None
    received = subject.received_at or now or datetime.now(timezone.utc)
    if received.tzinfo is None:
        received = received.replace(tzinfo=timezone.utc)
    basis = "|".join(
        [p_email or "", p_phone or "", p_cid or "", subject.type, received.isoformat()]
    )
    return {
        "request_id": "pr_" + hashlib.sha256(basis.encode("utf-8")).hexdigest()[:24],
        "received_at": received,
        "type": subject.type,
        "origin": origin,
        "subject_email": p_email,
        "subject_phone": p_phone,
        "subject_customer_id": p_cid,
        "deadline": received + timedelta(days=deadline_days),
        "status": "open",
        "layers": {},
        "completed_at": None,
        "run_id": None,
    }


def read_landing_requests(landing_root: str) -> list[Subject]:
    """Subjects of the ``privacy_requests`` landing files (CSV with a header)."""
    root = Path(landing_root.removeprefix("file://")) / LANDING_SOURCE
    if not root.is_dir():
        return []
    subjects: list[Subject] = []
    for path in sorted(root.rglob("*.csv")):
        subjects += forget_file(str(path))
    return subjects


def forget_file(name: str, *, default_type: str = "erase") -> list[Subject]:
    """Subjects of one CSV file (columns ``email, phone, customer_id`` and optionally
    ``type, received_at, phone_region``); the file's time when ``received_at`` is empty."""
    path = Path(name)
    subjects: list[Subject] = []
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            received = (row.get("received_at") or "").strip()
            subjects.append(
                Subject(
                    email=(row.get("email") or "").strip() or None,
                    phone=(row.get("phone") or "").strip() or None,
                    customer_id=(row.get("customer_id") or "").strip() or None,
                    type=(row.get("type") or default_type).strip().lower(),
                    received_at=datetime.fromisoformat(received) if received else modified,
                    phone_region=(row.get("phone_region") or "").strip() or None,
                )
            )
    return subjects


def submit_requests(
    store: Any,
    key: bytes,
    subjects: Iterable[Subject],
    *,
    origin: str,
    deadline_days: int = DEFAULT_DEADLINE_DAYS,
) -> list[str]:
    """Insert the requests not already in ``ops/privacy_requests``; returns their ids (all)."""
    rows = [request_row(key, s, origin=origin, deadline_days=deadline_days) for s in subjects]
    if not rows:
        return []
    unique = list({r["request_id"]: r for r in rows}.values())
    frame = store.spark.createDataFrame(unique, REQUESTS_SCHEMA)
    store.merge(REQUESTS_TABLE, frame, keys=["request_id"], update=False, insert=True)
    return [r["request_id"] for r in unique]


def open_requests(store: Any) -> list[dict[str, Any]]:
    """Open requests, oldest first (a handful per run: collected to the driver)."""
    if not store.exists(REQUESTS_TABLE):
        return []
    rows = store.read(REQUESTS_TABLE).where("status = 'open'").orderBy("received_at").collect()
    return [r.asDict() for r in rows]


def update_requests(store: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Write back the status of processed requests (merge on the request id)."""
    if rows:
        frame = store.spark.createDataFrame(list(rows), REQUESTS_SCHEMA)
        store.merge(REQUESTS_TABLE, frame, keys=["request_id"], update=True, insert=True)


def record_forget(
    config: Any,
    store: Any,
    subjects: Sequence[Subject],
) -> list[str]:
    """``cdp forget``: record the requests; the ``privacy`` stage carries them out."""
    return submit_requests(
        store,
        config.privacy_key(),
        subjects,
        origin="cli",
        deadline_days=deadline_days_of(config),
    )


def deadline_days_of(config: Any) -> int:
    return int(getattr(config.privacy, "deadline_days", DEFAULT_DEADLINE_DAYS))
