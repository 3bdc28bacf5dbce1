"""The pseudonymisation key and keyed hashes (HMAC-SHA256) computed in Python.

Spark computes the same digests with :func:`cdp.privacy.columns.hmac_sha256`; both give the
lower-case hex of ``hmac.new(key, value.encode("utf-8"), sha256)``, so a pseudonym written by
the CLI (a privacy request) matches one computed by a stage (the suppression check).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

from cdp.errors import ConfigError
from cdp.privacy.settings import PrivacyConfig

MIN_KEY_BYTES = 32
GENERATED_KEY = Path("_secrets") / "privacy.key"


def load_key(
    settings: PrivacyConfig,
    *,
    env: str,
    data_root: str,
    environ: Mapping[str, str] | None = None,
) -> bytes:
    """The key, from ``settings.key_env``, else ``settings.key_file``, else (only in the
    environments that allow it) the generated key under the data root. Never logged."""
    environ = os.environ if environ is None else environ
    value = environ.get(settings.key_env)
    if value:
        key = value.encode("utf-8")
        origin = f"environment variable {settings.key_env}"
    elif settings.key_file:
        path = Path(settings.key_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"privacy.key_file: no file {path}")
        key = path.read_bytes().strip()
        origin = f"privacy.key_file {path}"
    elif env in settings.generated_key_envs and "://" not in data_root:
        return _generated_key(Path(data_root) / GENERATED_KEY)
    else:
        raise ConfigError(
            f"privacy: no pseudonymisation key for environment {env!r}: set the environment "
            f"variable {settings.key_env} or privacy.key_file (at least {MIN_KEY_BYTES} bytes)"
        )
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"privacy: the key from {origin} is shorter than {MIN_KEY_BYTES} bytes")
    return key


def _generated_key(path: Path) -> bytes:
    """A random key made once per data root (owner-only file), so pseudonyms stay stable
    across runs without a well-known default key anyone could use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(MIN_KEY_BYTES).hex().encode("ascii"))
    return path.read_bytes().strip()


def derive_key(key: bytes, purpose: str) -> bytes:
    """A sub-key per purpose (``"export:<destination>"``, ``"subject"``), so digests made for
    one purpose cannot be joined with those of another."""
    return hmac.new(key, purpose.encode("utf-8"), hashlib.sha256).digest()


def pseudonym(key: bytes, value: str) -> str:
    """Lower-case hex HMAC-SHA256 of the UTF-8 text."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
