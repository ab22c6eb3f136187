"""The Kubernetes objects a stack declares, taken from engine documents, and written out for kubectl or GitOps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llm_mesh.engine.readers import EngineResource

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


def render(objects: list[KubeObject], out: Path) -> list[Path]:
    """One file per object (namespaces first) and a kustomization.yaml listing them; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    # Files a previous render listed go (objects the stack no longer has); nothing else in the folder is touched.
    previous = out / "kustomization.yaml"
    if previous.is_file():
        listed = (yaml.safe_load(previous.read_text()) or {}).get("resources") or []
        for name in listed:
            stale = out / str(name)
            if stale.parent == out and stale.is_file():
                stale.unlink()
    ordered = sorted(objects, key=lambda o: (o.kind != "Namespace", o.kind, o.namespace, o.name))
    written = []
    for index, obj in enumerate(ordered, start=1):
        path = out / file_name(index, obj)
        path.write_text(to_yaml(obj.manifest))
        written.append(path)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [p.name for p in written],
    }
    (out / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return written
