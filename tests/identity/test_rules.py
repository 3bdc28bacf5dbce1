"""The identity rules (lib/cdp/identity/rules.py): what a relaxed copy keeps."""

from __future__ import annotations

from pathlib import Path

from cdp.identity.rules import load_rules

SHIPPED = Path(__file__).resolve().parents[2] / "conf" / "rules" / "identity.yaml"


def test_a_field_without_conflicts_leaves_every_guard_but_its_own() -> None:
    rules = load_rules(SHIPPED)
    assert "birth_date" in rules.shared_values.max_distinct
    assert "birth_date" in rules.date_conflicts
    relaxed, notes = rules.without_conflicts_on(["birth_date", "phone"])
    assert "birth_date" not in relaxed.shared_values.max_distinct
    assert "birth_date" not in relaxed.date_conflicts
    assert "birth_date" not in relaxed.attribute_fields()
    # Every other guard as it was, and the shipped rules themselves untouched.
    assert relaxed.shared_values.max_distinct == {
        k: v for k, v in rules.shared_values.max_distinct.items() if k != "birth_date"
    }
    assert relaxed.attribute_limits == rules.attribute_limits
    assert relaxed.name_conflicts == rules.name_conflicts
    assert relaxed.shared_values.max_records == rules.shared_values.max_records
    assert "birth_date" in rules.date_conflicts
    # A note for the field that held guards; none for one that held none.
    assert notes == [
        "birth_date no longer tells people apart in shared_values.max_distinct, date_conflicts"
    ]
