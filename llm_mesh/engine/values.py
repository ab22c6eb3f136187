"""Values as the engine would show them: secrets hidden, provider-computed values marked unknown.

Under the mock runtime a provider-computed output (a cluster endpoint, a service account's email) gets a
marker string naming the resource and property. Whatever input is built from it (a kubeconfig, an IAM
member) still contains the marker, so the document can say precisely which values only a deployment
can know, and write them as the engine writes unknowns, never as invented values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# Pulumi's wire-level constants (pulumi.runtime.rpc): the unknown sentinel and the special-value signatures.
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
SECRET_TEXT = "[secret]"

_MARKER = re.compile(r"__computed__\(([^()]*)\)__")


def computed_marker(resource_name: str, prop: str) -> str:
    return f"__computed__({resource_name}.{prop})__"


def computed_refs(value: Any) -> set[str]:
    """Every provider-computed value (`name.prop`) that `value` was built from."""
    refs: set[str] = set()
    for text in _strings(value):
        refs.update(_MARKER.findall(text))
    return refs


def has_marker(text: str) -> bool:
    return "__computed__(" in text


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def display(value: Any) -> Any:
    """The value as `pulumi preview --json` prints it: secrets as [secret], computed as the unknown sentinel."""
    if isinstance(value, dict):
        sig = value.get(SIG_KEY)
        if sig == SECRET_SIG:
            return SECRET_TEXT
        if sig == RESOURCE_SIG:
            return display(value.get("urn", UNKNOWN))
        return {key: display(item) for key, item in value.items()}
    if isinstance(value, list):
        return [display(item) for item in value]
    if isinstance(value, str) and has_marker(value):
        return UNKNOWN
    if isinstance(value, float) and value.is_integer():
        # The engine's JSON writes whole numbers without a fraction, as Go's encoder does.
        return int(value)
    return value
