"""Errors every layer raises; a bottom module, so that anything may import it."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names the key and its origin."""
