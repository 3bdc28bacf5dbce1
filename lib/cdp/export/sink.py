"""Where exported files go: a local directory or an S3(-compatible) bucket, behind one small
interface. This is the only module of cdp that talks to object storage.

S3 uploads go through boto3's managed transfer (``TransferConfig``: multipart above the
threshold, parts uploaded concurrently) with botocore's own per-request retries (standard
mode), and each whole upload is retried with exponential backoff on transient failures.
Credentials come only from the standard AWS chain (environment, shared config and credential
files, container or instance role): nothing here accepts a key. Every object is written with
server-side encryption requested (SSE-S3 or SSE-KMS) and, when configured, every request names
the account that must own the bucket (``ExpectedBucketOwner``).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cdp.errors import ConfigError
from cdp.export.settings import PLAINTEXT_REFUSED, ExportConfig

log = logging.getLogger(__name__)

R = TypeVar("R")
# Where notebooks export segments unless told otherwise (cdp.notebook.export_segment), under
# the data root: never <data_root>/exports, which belongs to the export stage (and which its
# tests count). The privacy stage rewrites it on erasure as it does the export target.
NOTEBOOK_EXPORTS = "notebook_exports"
MIB = 1024 * 1024

# S3 error codes worth another try; anything else (AccessDenied, NoSuchBucket ...) is final.
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "500",
        "502",
        "503",
        "504",
    }
)


class ExportError(RuntimeError):
    """The export target is unusable or a delivery failed for good."""


def _transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying: network trouble or a server-side S3 error."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(
        exc, (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)
    ):
        return True
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return str(err.get("Code")) in TRANSIENT_CODES or status >= 500
    if isinstance(exc, S3UploadFailedError):
        # boto3 wraps the part's error in text only; "AccessDenied" and "NoSuchBucket" are final.
        text = str(exc)
        return not any(
            code in text for code in ("AccessDenied", "NoSuchBucket", "InvalidAccessKeyId")
        )
    return isinstance(exc, (ConnectionError, TimeoutError))


def with_retries(
    action: Callable[[], R],
    *,
    what: str,
    attempts: int,
    base_seconds: float,
    retryable: Callable[[BaseException], bool] = _transient,
    sleep: Callable[[float], None] = time.sleep,
) -> R:
    """Run ``action``; on a retryable failure wait ``base * 2**n`` seconds (with up to 50%
    jitter, capped at 30 s) and try again, ``attempts`` tries in all."""
    for n in range(attempts):
        try:
            return action()
        except Exception as exc:
            if n + 1 >= attempts or not retryable(exc):
                raise
            delay = min(30.0, base_seconds * (2**n)) * (1 + random.random() / 2)
            log.warning(
                "%s failed (%s); retry %d of %d in %.2fs", what, exc, n + 1, attempts - 1, delay
            )
            sleep(delay)
    raise AssertionError("unreachable")


class Sink(Protocol):
    """A place that exported objects are written to, addressed by relative keys."""

    @property
    def root(self) -> str:
        """The destination's own address (the target): what per-destination pseudonyms are
        keyed on."""
        ...

    def uri(self, key: str) -> str:
        """The full address of ``key`` (for manifests and messages)."""
        ...

    def put_file(self, local: Path, key: str) -> None: ...

    def put_bytes(self, data: bytes, key: str, content_type: str) -> None: ...

    def delete(self, keys: list[str]) -> None:
        """Remove ``keys`` (missing ones are ignored)."""
        ...

    def list_keys(self, prefix: str = "") -> list[str]:
        """Every key under the root that starts with ``prefix``, sorted (erasure rewrites past
        deliveries; an export looks for its own earlier delivery)."""
        ...

    def get_bytes(self, key: str) -> bytes: ...


class LocalSink:
    """A directory; every file appears whole (written aside, then renamed into place)."""

    def __init__(self, root: str | Path) -> None:
        self.path = Path(root)

    @property
    def root(self) -> str:
        return str(self.path)

    def uri(self, key: str) -> str:
        return str(self.path / key)

    def _place(self, key: str, write: Callable[[Path], object]) -> None:
        dest = self.path / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.inprogress")
        write(tmp)
        os.replace(tmp, dest)

    def put_file(self, local: Path, key: str) -> None:
        self._place(key, lambda tmp: shutil.copyfile(local, tmp))

    def put_bytes(self, data: bytes, key: str, content_type: str) -> None:
        self._place(key, lambda tmp: tmp.write_bytes(data))

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            (self.path / key).unlink(missing_ok=True)
        # Folders left empty go too, as prefixes vanish from an object store with their keys.
        for folder in sorted({(self.path / k).parent for k in keys}, key=lambda f: -len(f.parts)):
            while folder != self.path and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent

    def list_keys(self, prefix: str = "") -> list[str]:
        # The folder part of the prefix bounds the walk; the rest filters names.
        folder = self.path / prefix.rsplit("/", 1)[0] if "/" in prefix else self.path
        if not folder.is_dir():
            return []
        keys = (p.relative_to(self.path).as_posix() for p in folder.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix))

    def get_bytes(self, key: str) -> bytes:
        return (self.path / key).read_bytes()


@dataclass
class S3Sink:
    """``s3://bucket/prefix`` through a boto3 client (any S3-compatible endpoint)."""

    client: Any
    bucket: str
    prefix: str
    transfer_config: Any
    attempts: int
    base_seconds: float
    # ServerSideEncryption (and SSEKMSKeyId) for every object written.
    encryption: dict[str, str] = field(default_factory=lambda: {"ServerSideEncryption": "AES256"})
    # ExpectedBucketOwner for every request, when configured.
    owner: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.key(key)}"

    def put_file(self, local: Path, key: str) -> None:
        with_retries(
            lambda: self.client.upload_file(
                str(local),
                self.bucket,
                self.key(key),
                ExtraArgs={**self.encryption, **self.owner},
                Config=self.transfer_config,
            ),
            what=f"upload of {self.uri(key)}",
            attempts=self.attempts,
            base_seconds=self.base_seconds,
        )

    def put_bytes(self, data: bytes, key: str, content_type: str) -> None:
        with_retries(
            lambda: self.client.put_object(
                Bucket=self.bucket,
                Key=self.key(key),
                Body=data,
                ContentType=content_type,
                **self.encryption,
                **self.owner,
            ),
            what=f"write of {self.uri(key)}",
            attempts=self.attempts,
            base_seconds=self.base_seconds,
        )

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1000 keys at most
            batch = [{"Key": self.key(k)} for k in keys[start : start + 1000]]
            if batch:
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch}, **self.owner
                )

    def list_keys(self, prefix: str = "") -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base + prefix, **self.owner
        )
        for page in pages:
            keys += [obj["Key"][len(base) :] for obj in page.get("Contents", [])]
        return sorted(keys)

    def get_bytes(self, key: str) -> bytes:
        body = with_retries(
            lambda: self.client.get_object(Bucket=self.bucket, Key=self.key(key), **self.owner),
            what=f"read of {self.uri(key)}",
            attempts=self.attempts,
            base_seconds=self.base_seconds,
        )["Body"]
        return bytes(body.read())


def transfer_config(cfg: ExportConfig) -> Any:
    """boto3's ``TransferConfig`` from the export settings (multipart sizes in MiB)."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=cfg.multipart_threshold_mb * MIB,
        multipart_chunksize=cfg.multipart_chunksize_mb * MIB,
        max_concurrency=cfg.max_concurrency,
        use_threads=cfg.max_concurrency > 1,
    )


def s3_client(cfg: ExportConfig) -> Any:
    """An S3 client from the standard credential chain, with standard-mode retries."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=cfg.endpoint_url,
        region_name=cfg.region,
        config=Config(retries={"max_attempts": cfg.max_attempts, "mode": "standard"}),
    )


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> ("bucket", "a/b")."""
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


def encryption_args(cfg: ExportConfig) -> dict[str, str]:
    """The server-side encryption every object is written with."""
    args: dict[str, str] = {"ServerSideEncryption": cfg.sse}
    if cfg.sse == "aws:kms" and cfg.sse_kms_key_id:
        args["SSEKMSKeyId"] = cfg.sse_kms_key_id
    return args


def open_sink(cfg: ExportConfig, default_target: str) -> Sink:
    """The sink for ``cfg.target`` (``default_target`` when unset); an S3 bucket is checked
    first (and its owner, when ``expected_bucket_owner`` is set), so a wrong name or missing
    permission fails before anything is written. Plaintext identifiers never go to S3."""
    target = cfg.target or default_target
    if target.startswith("s3://"):
        from botocore.exceptions import BotoCoreError, ClientError

        if not cfg.hash_identifiers:
            raise ConfigError(f"activation.export: {PLAINTEXT_REFUSED} (target {target})")
        bucket, prefix = split_s3(target)
        client = s3_client(cfg)
        owner = (
            {"ExpectedBucketOwner": cfg.expected_bucket_owner} if cfg.expected_bucket_owner else {}
        )
        try:
            with_retries(
                lambda: client.head_bucket(Bucket=bucket, **owner),
                what=f"check of bucket {bucket}",
                attempts=cfg.max_attempts,
                base_seconds=cfg.retry_base_seconds,
            )
        except (ClientError, BotoCoreError) as exc:
            raise ExportError(f"export target {target}: bucket not usable: {exc}") from exc
        return S3Sink(
            client=client,
            bucket=bucket,
            prefix=prefix,
            transfer_config=transfer_config(cfg),
            attempts=cfg.max_attempts,
            base_seconds=cfg.retry_base_seconds,
            encryption=encryption_args(cfg),
            owner=owner,
        )
    if "://" in target and not target.startswith("file://"):
        raise ExportError(f"export target {target}: only local paths, file:// and s3:// work")
    return LocalSink(Path(target.removeprefix("file://")).expanduser().resolve())
