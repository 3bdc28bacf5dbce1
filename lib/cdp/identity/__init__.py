"""Identity resolution: linking identifiers of the same customer into one identity."""

from __future__ import annotations

from cdp.identity.components import (
    connected_components,
    graphframes_available,
    reference_components,
)

__all__ = ["connected_components", "graphframes_available", "reference_components"]
