"""Small readers over preview documents, so tests say what they check."""

from __future__ import annotations

from typing import Any


def steps_of_type(document: dict[str, Any], type_token: str) -> list[dict[str, Any]]:
    return [s for s in document["steps"] if s["newState"]["type"] == type_token]


def resource(document: dict[str, Any], type_token: str, name: str) -> dict[str, Any]:
    """The newState of the one resource with this type and name."""
    found = [s["newState"] for s in steps_of_type(document, type_token) if s["urn"].endswith(f"::{name}")]
    assert len(found) == 1, f"expected one {type_token} named {name}, found {len(found)}"
    return found[0]


def prop(state: dict[str, Any], path: str) -> Any:
    """A nested input by dotted path; list items by index (`guestAccelerators.0.type`)."""
    value: Any = state["inputs"]
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value
