"""Privacy: keyed pseudonyms, erasure and suppression requests, consent that fails closed.

``settings`` and ``keys`` are free of Spark (configuration and the CLI import them);
``columns`` holds the Spark expressions.
"""
