"""Audiences: YAML-declared rules over profile traits, propensity scores and consents, and the
self-updating membership table ``gold/audience_membership``."""
