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


HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


def kube_object_keys(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, namespace, name) of every Kubernetes object the document declares, sorted: each step of a
    `kubernetes:` type but Helm releases (providers are `pulumi:providers:kubernetes`), read from its inputs;
    cluster-scoped objects have namespace ""."""
    keys = []
    for step in document["steps"]:
        state = step["newState"]
        if state["type"].startswith("kubernetes:") and state["type"] != HELM_RELEASE:
            metadata = state["inputs"]["metadata"]
            keys.append((state["inputs"]["kind"], metadata.get("namespace", ""), metadata["name"]))
    return sorted(keys)


def manifest_key(manifest: dict[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name) of a written manifest, as `kube_object_keys` reads a declared one."""
    metadata = manifest["metadata"]
    return manifest["kind"], metadata.get("namespace", ""), metadata["name"]


def prop(state: dict[str, Any], path: str) -> Any:
    """A nested input by dotted path; list items by index (`guestAccelerators.0.type`)."""
    value: Any = state["inputs"]
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


# What every served model in a test config needs: the GPU fit's inputs and a version with weights.
FIT: dict[str, Any] = {"shape": {"preset": "llama-3.1-8b"}, "contextLength": 8192}
FILES: list[dict[str, Any]] = [{"path": "config.json"}, {"path": "model.safetensors"}]
# The same files as `llm-mesh models push` records them, as prod requires: size and sha256 (of b"{}" and b"").
PUSHED_FILES: list[dict[str, Any]] = [
    {"path": "config.json", "size": 2, "sha256": "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
    {
        "path": "model.safetensors",
        "size": 0,
        "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    },
]


def version(name: str, **changes: Any) -> dict[str, Any]:
    return {"version": name, "files": FILES, **changes}


def served_model(name: str = "llama", **changes: Any) -> dict[str, Any]:
    """A model entry of a stack config (camelCase, as written in a stack file) that fits an L4."""
    return {"name": name, **FIT, "stable": version("v1"), **changes}


def run_with_reader_gone(*args: str, timeout: float = 120) -> tuple[int, str]:
    """`llm-mesh ARGS | head`, with the reader gone before the first line: the exit code and what went to stderr."""
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "llm_mesh.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the first line is written: that write fails as it does under `| head`
    stderr = process.stderr.read().decode()
    return process.wait(timeout=timeout), stderr
