"""Keyed hashes as Spark expressions (no Python UDF: they run in the JVM on every executor)."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

_BLOCK = 64  # SHA-256 block size in bytes (RFC 2104)


def hmac_sha256(c: Column, key: bytes) -> Column:
    """Lower-case hex HMAC-SHA256 of the UTF-8 text of ``c`` under ``key``; null stays null.

    Built from ``sha2`` over binary: H((K ^ opad) || H((K ^ ipad) || m)), the same digest as
    :func:`cdp.privacy.keys.pseudonym`.
    """
    if len(key) > _BLOCK:
        import hashlib

        key = hashlib.sha256(key).digest()
    padded = key.ljust(_BLOCK, b"\x00")
    ipad = bytearray(b ^ 0x36 for b in padded)
    opad = bytearray(b ^ 0x5C for b in padded)
    inner = F.unhex(F.sha2(F.concat(F.lit(ipad), F.encode(c.cast("string"), "UTF-8")), 256))
    return F.when(c.isNotNull(), F.sha2(F.concat(F.lit(opad), inner), 256))
