"""Spark-native Customer Data Platform."""

__version__ = "0.1.0"
