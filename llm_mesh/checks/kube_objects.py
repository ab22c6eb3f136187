"""The Kubernetes objects a stack declares, taken from engine documents, and written out for kubectl or GitOps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llm_mesh.engine.readers import EngineResource
from llm_mesh.engine.values import UNKNOWN
from llm_mesh.errors import InputError

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
_HEAD = ("apiVersion", "kind", "metadata")


@dataclass(frozen=True)
class KubeObject:
    urn: str
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def api_version(self) -> str:
        return str(self.manifest["apiVersion"])

    @property
    def namespace(self) -> str:
        return str(self.manifest.get("metadata", {}).get("namespace", ""))

    @property
    def name(self) -> str:
        return str(self.manifest.get("metadata", {}).get("name", ""))

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"

    @property
    def is_istio(self) -> bool:
        return self.api_version.split("/")[0].endswith(".istio.io")


def kube_objects(resources: list[EngineResource]) -> list[KubeObject]:
    """Every plain Kubernetes object (not providers, not Helm releases), in the document's order."""
    objects = []
    for r in resources:
        if (
            r.type.startswith("kubernetes:")
            and r.type != HELM_RELEASE
            and "apiVersion" in r.inputs
            and "kind" in r.inputs
        ):
            objects.append(KubeObject(r.urn, r.inputs))
    return objects


def helm_releases(resources: list[EngineResource]) -> list[EngineResource]:
    return [r for r in resources if r.type == HELM_RELEASE]


def to_yaml(manifest: dict[str, Any]) -> str:
    """apiVersion, kind and metadata first, as people write manifests; the rest in key order."""
    ordered = {key: manifest[key] for key in _HEAD if key in manifest}
    ordered.update({key: manifest[key] for key in sorted(manifest) if key not in _HEAD})
    return yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False)


def file_name(index: int, obj: KubeObject) -> str:
    parts = [obj.kind.lower(), obj.namespace, obj.name] if obj.namespace else [obj.kind.lower(), obj.name]
    slug = re.sub(r"[^a-z0-9.-]+", "-", "-".join(parts).lower())
    return f"{index:03d}-{slug}.yaml"


# The first line of every kustomization render writes: what marks a folder as render's own to rewrite.
OWNER_MARK = "# Written by `llm-mesh render`: rewritten (files listed here replaced) on every render."


class FolderNotOurs(InputError):
    """The output folder holds files render did not write."""


def render_check(out: Path, overwrite: bool = False) -> None:
    """Refuse, before anything is written, a folder holding files of someone else's (unless asked)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FolderNotOurs(f"{out}: not a folder; name a new or empty folder for --out")
    kustomization = out / "kustomization.yaml"
    ours = kustomization.is_file() and kustomization.read_text().startswith(OWNER_MARK)
    if not ours and any(out.iterdir()) and not overwrite:
        raise FolderNotOurs(
            f"{out}: holds files `llm-mesh render` did not write; name a new or empty folder for --out, or pass "
            "--overwrite to write into it (its other files are kept, kustomization.yaml is replaced)"
        )


def render(objects: list[KubeObject], out: Path, overwrite: bool = False) -> list[Path]:
    """One file per object (namespaces first) and a kustomization.yaml listing them; returns the files.

    Files a previous render listed go (objects the stack no longer has); nothing else in the folder is touched,
    and a folder render did not write is refused unless `overwrite`.
    """
    render_check(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    previous = out / "kustomization.yaml"
    listed: list[Any] = []
    if previous.is_file() and previous.read_text().startswith(OWNER_MARK):
        listed = (yaml.safe_load(previous.read_text()) or {}).get("resources") or []
    ordered = sorted(objects, key=lambda o: (o.kind != "Namespace", o.kind, o.namespace, o.name))
    names = [file_name(index, obj) for index, obj in enumerate(ordered, start=1)]
    # Under --overwrite the folder's other files are kept: one whose name render would write is refused, before
    # anything is written, rather than replaced.
    taken = [name for name in names if (out / name).exists() and name not in {str(n) for n in listed}]
    if taken:
        raise FolderNotOurs(
            f"{out / taken[0]}: a file `llm-mesh render` did not write has the name of one it would write "
            f"({len(taken)} such); move it, or name another folder for --out"
        )
    for name in listed:
        stale = out / str(name)
        if stale.parent == out and stale.is_file():
            stale.unlink()
    written = []
    for name, obj in zip(names, ordered, strict=True):
        path = out / name
        path.write_text(to_yaml(obj.manifest))
        written.append(path)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [p.name for p in written],
    }
    (out / "kustomization.yaml").write_text(OWNER_MARK + "\n" + yaml.safe_dump(kustomization, sort_keys=False))
    return written


def unknown_paths(value: Any, path: str = "") -> list[str]:
    """Dotted paths of every value only a deployment knows (Pulumi's unknown sentinel)."""
    if value == UNKNOWN:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in unknown_paths(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in unknown_paths(v, f"{path}[{i}]")]
    return []


def without_unknowns(value: Any) -> Any:
    """The manifest with every unknown value left out: never written as if it were one."""
    if isinstance(value, dict):
        return {k: without_unknowns(v) for k, v in value.items() if v != UNKNOWN}
    if isinstance(value, list):
        return [without_unknowns(v) for v in value if v != UNKNOWN]
    return value


def filled_from(objects: list[KubeObject], deployed: list[EngineResource]) -> list[KubeObject]:
    """Objects whose unknown values a real `pulumi stack export` knows: each taken from the deployed resource
    with the same URN (its inputs, resolved by the engine). Objects the export lacks stay as they are."""
    by_urn = {r.urn: r for r in deployed}
    filled = []
    for obj in objects:
        match = by_urn.get(obj.urn)
        if match is not None and unknown_paths(obj.manifest) and "apiVersion" in match.inputs:
            filled.append(KubeObject(obj.urn, match.inputs))
        else:
            filled.append(obj)
    return filled
