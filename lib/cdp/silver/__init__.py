"""Silver layer: standardized, validated, de-duplicated canonical entities."""
