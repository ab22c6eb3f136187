"""Values as the engine would show them: secrets hidden, provider-computed values marked unknown.

Under the mock runtime a provider-computed output (a cluster endpoint, a service account's email) gets a
marker string naming the resource and property. Whatever input is built from it (a kubeconfig, an IAM
member) still contains the marker, so the document can say precisely which values only a deployment
can know, and write them as the engine writes unknowns, never as invented values.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterable
from functools import cache
from pathlib import Path
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


def secret_fingerprints(value: Any, path: str = "") -> dict[str, str]:
    """A fingerprint of each secret in `value`, by its dotted path: equal values, equal fingerprints.

    It tells a reviewer that a secret changed between two previews without showing it: an HMAC under a key of
    this machine (`LLM_MESH_FINGERPRINT_KEY`, else a random key made once in ~/.cache/llm-mesh), so a
    fingerprint cannot be checked against guessed values by anyone without that key.
    """
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            plain = json.dumps(value.get("value", value.get("ciphertext")), sort_keys=True).encode()
            return {path: hmac.new(_fingerprint_key(), plain, hashlib.sha256).hexdigest()[:16]}
        found: dict[str, str] = {}
        for key, item in value.items():
            found.update(secret_fingerprints(item, f"{path}.{key}" if path else str(key)))
        return found
    if isinstance(value, list):
        found = {}
        for i, item in enumerate(value):
            found.update(secret_fingerprints(item, f"{path}[{i}]"))
        return found
    return {}


@cache
def _fingerprint_key() -> bytes:
    configured = os.environ.get("LLM_MESH_FINGERPRINT_KEY")
    if configured:
        return configured.encode()
    path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm-mesh" / "secret-fingerprint.key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip().encode()
