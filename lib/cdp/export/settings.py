"""The ``activation.export`` section of the run configuration.

Kept free of cdp (and boto3) imports so that :mod:`cdp.config` can import it without a cycle.
There is deliberately no field for credentials: the S3 client takes them from the standard
AWS chain (environment, shared files, instance or container role), and ``extra="forbid"``
rejects any key someone tries to add for them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ExportConfig(BaseModel):
    """Where and how the ``export`` stage delivers each audience."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # None: the directory <data_root>/exports. Otherwise a local path or s3://bucket[/prefix].
    target: str | None = None
    # For S3-compatible stores (MinIO, Ceph, moto ...); None: AWS itself.
    endpoint_url: str | None = None
    region: str | None = None
    format: Literal["parquet", "csv"] = "parquet"
    # SHA-256 of the normalized email and E.164 phone, as ad platforms expect (they match on
    # plain SHA-256, so these digests are guessable from a list of addresses: treat the files
    # as personal data). false (plaintext) is refused for s3:// targets.
    hash_identifiers: bool = True
    # The customer id, as a per-destination HMAC (never the internal id): two destinations
    # cannot join their files on it. Off unless asked.
    include_customer_id: bool = False
    # S3 server-side encryption requested on every object: SSE-S3 ("AES256") or SSE-KMS
    # ("aws:kms", with the key sse_kms_key_id, or the account's aws/s3 key when null).
    sse: Literal["AES256", "aws:kms"] = "AES256"
    sse_kms_key_id: str | None = None
    # The AWS account that must own the bucket (ExpectedBucketOwner on every request): a
    # bucket name taken over by someone else then fails instead of receiving the data.
    expected_bucket_owner: str | None = Field(default=None, pattern=r"^[0-9]{12}$")
    # Only these audiences (None: every declared audience).
    audiences: list[str] | None = None
    rows_per_file: int = Field(default=1_000_000, ge=1)
    # None: <data_root>/_staging/export (needs a local data root).
    staging_dir: str | None = None
    # S3 multipart transfers; S3 refuses parts under 5 MiB, except the last.
    multipart_threshold_mb: int = Field(default=16, ge=5)
    multipart_chunksize_mb: int = Field(default=16, ge=5)
    max_concurrency: int = Field(default=4, ge=1, le=64)
    # botocore's own retries per request, and ours around the manifest and the _SUCCESS mark.
    max_attempts: int = Field(default=5, ge=1, le=20)
    retry_base_seconds: float = Field(default=0.5, ge=0)

    @field_validator("target")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None or "://" not in value:
            return value
        scheme, rest = value.split("://", 1)
        if scheme == "file":
            return value
        if scheme != "s3":
            raise ValueError("must be a local path, file://PATH or s3://BUCKET[/PREFIX]")
        if not rest.split("/", 1)[0]:
            raise ValueError("s3:// target needs a bucket name")
        return value

    @model_validator(mode="after")
    def _endpoint_needs_s3(self) -> ExportConfig:
        if self.endpoint_url and not (self.target or "").startswith("s3://"):
            raise ValueError("endpoint_url is only used with an s3:// target")
        if self.sse_kms_key_id and self.sse != "aws:kms":
            raise ValueError("sse_kms_key_id is only used with sse: aws:kms")
        if (self.target or "").startswith("s3://") and not self.hash_identifiers:
            raise ValueError(PLAINTEXT_REFUSED)
        return self


# Also raised by the sink when the default target (under the data root) is an s3:// one.
PLAINTEXT_REFUSED = (
    "hash_identifiers: false (plaintext e-mails and phones) is refused for object-store "
    "(s3://) targets; keep hash_identifiers: true or export to a local path"
)
