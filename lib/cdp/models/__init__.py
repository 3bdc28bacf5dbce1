"""Propensity models: point-in-time features, labels, training with MLflow, batch scoring."""
