"""Schema checks by published validators, not by our own models.

Core Kubernetes objects: kubernetes-validate's strict OpenAPI schemas for the cluster's version.
Istio objects: the pydantic models cloudcoil generates from Istio's CRDs. They drop unknown fields instead of
refusing them, so an object that does not survive a round trip unchanged has fields Istio would ignore.
Gateway API and Inference Extension objects: the openAPIV3Schema of the CRDs the stack installs
(llm_mesh/plan/crds/), with unknown fields refused as the API server's strict field validation does.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import jsonschema
import kubernetes_validate
from pydantic import ValidationError

from llm_mesh.checks.findings import Finding
from llm_mesh.checks.kube_objects import KubeObject
from llm_mesh.errors import InputError
from llm_mesh.plan.crds import crd_schema

_ISTIO_GROUPS = {
    "networking.istio.io": "networking",
    "security.istio.io": "security",
    "telemetry.istio.io": "telemetry",
}


# Kubernetes SIG projects' CRDs, whose schemas come with the CRDs the stack installs, not with Kubernetes' own.
CRD_GROUPS = ("gateway.networking.k8s.io", "inference.networking.k8s.io", "inference.networking.x-k8s.io")


def is_installed_crd(obj: KubeObject) -> bool:
    return obj.api_version.rpartition("/")[0] in CRD_GROUPS


def is_core(obj: KubeObject) -> bool:
    """Kubernetes' own API groups (`v1`, `apps/v1`, `policy.k8s.io`...), which its OpenAPI schema covers."""
    group = obj.api_version.rpartition("/")[0]
    return ("." not in group or group.endswith(".k8s.io")) and not is_installed_crd(obj)


def unchecked(objects: list[KubeObject]) -> list[KubeObject]:
    """Objects of other vendors' CRDs (e.g. Google's PodMonitoring): no published schema here to check them."""
    return [o for o in objects if not o.is_istio and not is_core(o) and not is_installed_crd(o)]


class UnsupportedVersion(InputError):
    """No Kubernetes schemas for the asked minor are installed here."""


def check_version(kubernetes_version: str) -> None:
    """Refuse, before any object is checked, a minor kubernetes-validate ships no schemas for."""
    from kubernetes_validate.utils import all_versions

    minors = sorted({".".join(v.split(".")[:2]) for v in all_versions()}, key=lambda v: tuple(map(int, v.split("."))))
    if kubernetes_version not in minors:
        raise UnsupportedVersion(
            f"Kubernetes {kubernetes_version}: no schemas installed for it (kubernetes-validate has {minors[0]} to "
            f"{minors[-1]}); pass --kubernetes-version {minors[-1]}, or upgrade kubernetes-validate"
        )


def schema_findings(objects: list[KubeObject], kubernetes_version: str) -> list[Finding]:
    findings = []
    skipped = {id(o) for o in unchecked(objects)}
    for obj in objects:
        if id(obj) in skipped:
            continue
        if obj.is_istio:
            problem = _istio_problem(obj)
        elif is_installed_crd(obj):
            problem = _crd_problem(obj)
        else:
            problem = _core_problem(obj, kubernetes_version)
        if problem:
            code, message, fix = problem
            findings.append(Finding(code, "error", obj.key, message, fix))
    return findings


def _core_problem(obj: KubeObject, kubernetes_version: str) -> tuple[str, str, str] | None:
    try:
        kubernetes_validate.validate(obj.manifest, f"{kubernetes_version}.0", strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(p) for p in error.path) or "(top)"
        return (
            "K8S001",
            f"{where}: {error.message}",
            f"correct {where} to match the Kubernetes {kubernetes_version} API",
        )
    except kubernetes_validate.SchemaNotFoundError:
        return (
            "K8S002",
            f"no schema for {obj.api_version} {obj.kind} in Kubernetes {kubernetes_version}",
            "use an API version the cluster serves",
        )
    return None


_COMBINATORS = ("oneOf", "anyOf", "allOf", "not")


def closed(schema: Any, branch: bool = False) -> Any:
    """The schema as the API server applies it under strict field validation: an object's unknown fields are
    refused (the published schema leaves that to pruning, which jsonschema does not do). A oneOf/anyOf branch
    only adds conditions to the object its parent describes: it stays open."""
    if isinstance(schema, dict):
        schema = {k: closed(v, k in _COMBINATORS) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema and not branch:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [closed(v, branch) for v in schema]
    return schema


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator | None:
    group, _, version = api_version.partition("/")
    schema = crd_schema(group, kind, version)
    if schema is None:
        return None
    # metadata is the API server's to check (and Kubernetes' schema): the CRD gives it as a bare object.
    return jsonschema.Draft7Validator(closed({**schema, "properties": {**schema["properties"], "metadata": {}}}))


def _crd_problem(obj: KubeObject) -> tuple[str, str, str] | None:
    validator = crd_validator(obj.api_version, obj.kind)
    if validator is None:
        return (
            "CRD002",
            f"no installed CRD serves {obj.api_version} {obj.kind}",
            "use a kind and version of the Gateway API or Inference Extension CRDs in llm_mesh/plan/crds/",
        )
    errors = sorted(validator.iter_errors(obj.manifest), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return None
    where = ".".join(str(p) for p in errors[0].absolute_path) or "(top)"
    return "CRD001", f"{where}: {errors[0].message}", f"correct {where} as the installed CRD's schema requires"


def _istio_problem(obj: KubeObject) -> tuple[str, str, str] | None:
    group, _, version = obj.api_version.partition("/")
    module_name = _ISTIO_GROUPS.get(group)
    model = None
    if module_name:
        try:
            module = importlib.import_module(f"cloudcoil.models.istio.{module_name}.{version}")
            model = getattr(module, obj.kind, None)
        except ImportError:
            model = None
    if model is None:
        return "IST001", f"no published Istio schema for {obj.api_version} {obj.kind}", "use a served Istio API version"
    try:
        parsed = model.model_validate(obj.manifest)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return "IST002", f"{where}: {first['msg']}", f"correct {where} as Istio's CRD schema requires"
    dropped = _dropped_paths(obj.manifest, parsed.model_dump(by_alias=True, exclude_none=True, mode="json"))
    if dropped:
        return (
            "IST003",
            f"fields unknown to Istio's schema: {', '.join(dropped)}",
            "remove or rename them; Istio ignores them",
        )
    return None


def _dropped_paths(given: Any, kept: Any, path: str = "") -> list[str]:
    if isinstance(given, dict):
        kept_dict = kept if isinstance(kept, dict) else {}
        dropped = []
        for key, value in given.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in kept_dict:
                # An empty object the schema models as unset is not a lost field.
                if value not in ({}, [], None):
                    dropped.append(where)
            else:
                dropped += _dropped_paths(value, kept_dict[key], where)
        return dropped
    if isinstance(given, list) and isinstance(kept, list):
        return [
            p for i, (g, k) in enumerate(zip(given, kept, strict=False)) for p in _dropped_paths(g, k, f"{path}[{i}]")
        ]
    return []
