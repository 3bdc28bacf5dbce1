"""Identity resolution: linking identifiers of the same customer into one identity.

Deliberately empty: ``cdp.config`` imports ``cdp.identity.settings`` (pydantic only), and
anything exported here would load with it; connected components and the resolver need Spark,
so import them from their modules (``cdp.identity.components`` ...).
"""
