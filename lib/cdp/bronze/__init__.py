"""Bronze layer: raw landing of every source into Delta tables."""
