"""What the rules share: the environment, resource kinds, and reading pod specs from workload props.

Props arrive as the engine presents them: camelCase input names, Kubernetes objects as `metadata`/`spec`.
During a preview a value may be unknown; reading it raises UnknownValueError, which the engine (and the
offline runner) reports as "not evaluated" rather than as a violation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypedDict

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

ENVIRONMENTS = ("dev", "staging", "prod")
ROOT_NAMESPACE = "istio-system"
WORKLOAD_TYPES = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:batch/v1:Job",
    "kubernetes:batch/v1:CronJob",
    "kubernetes:core/v1:Pod",
}
NAMESPACE_TYPE = "kubernetes:core/v1:Namespace"
CLUSTER_TYPE = "gcp:container/cluster:Cluster"
NODE_POOL_TYPE = "gcp:container/nodePool:NodePool"
BUCKET_TYPE = "gcp:storage/bucket:Bucket"
HELM_RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
GPU = "nvidia.com/gpu"

# Every rule accepts `environment` in its config, to override the one read from the stack name.
ENVIRONMENT_SCHEMA = {"environment": {"type": "string", "enum": list(ENVIRONMENTS)}}


def environment(urn: str, config: Mapping[str, Any]) -> str:
    """The config's environment, else the stack name when it is one, else prod (the strictest)."""
    configured = config.get("environment")
    if configured in ENVIRONMENTS:
        return str(configured)
    stack = urn.split("::", 1)[0].rsplit(":", 1)[-1] if urn.startswith("urn:pulumi:") else ""
    return stack if stack in ENVIRONMENTS else "prod"


def istio_kind(resource_type: str, group: str, kind: str) -> bool:
    """`kubernetes:security.istio.io/v1:PeerAuthentication` and the same kind at any API version."""
    return resource_type.startswith(f"kubernetes:{group}.istio.io/") and resource_type.endswith(f":{kind}")


def metadata(props: Mapping[str, Any]) -> Mapping[str, Any]:
    return props.get("metadata") or {}


def namespace_of(props: Mapping[str, Any]) -> str:
    return str(metadata(props).get("namespace") or "default")


def spec(props: Mapping[str, Any]) -> Mapping[str, Any]:
    return props.get("spec") or {}


def injection_enabled(labels: Mapping[str, Any]) -> bool:
    """Sidecars by revision or by the classic label, or ambient mode; `istio-injection=disabled` wins."""
    if labels.get("istio-injection") == "disabled":
        return False
    return (
        bool(labels.get("istio.io/rev"))
        or labels.get("istio-injection") == "enabled"
        or labels.get("istio.io/dataplane-mode") == "ambient"
    )


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any]:
    body = spec(props)
    if resource_type.endswith(":Pod"):
        return body
    if resource_type.endswith(":CronJob"):
        body = (body.get("jobTemplate") or {}).get("spec") or {}
    return ((body.get("template") or {}).get("spec")) or {}


def containers(pod: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from pod.get("initContainers") or []
    yield from pod.get("containers") or []


def is_in_mesh_host(host: str, namespaces: set[str]) -> bool:
    """Short names, `<service>.<namespace>` for a namespace of the stack, and cluster-local names are in the mesh;
    anything else (`api.openai.com`, `github.com`) is external."""
    labels = host.split(".")
    if len(labels) == 1 or host.endswith((".svc", ".svc.cluster.local")):
        return True
    return len(labels) == 2 and labels[1] in namespaces


def declared_namespaces(props_of_resources: list[tuple[str, Mapping[str, Any]]]) -> set[str]:
    """Namespaces the stack declares or puts objects in."""
    found = set()
    for resource_type, props in props_of_resources:
        if not resource_type.startswith("kubernetes:"):
            continue
        meta = metadata(props)
        if resource_type == NAMESPACE_TYPE and meta.get("name"):
            found.add(str(meta["name"]))
        elif meta.get("namespace"):
            found.add(str(meta["namespace"]))
    return found


def _schema(extra: Mapping[str, dict[str, Any]] | None) -> PolicyConfigSchema:
    return PolicyConfigSchema(properties={**ENVIRONMENT_SCHEMA, **(extra or {})})


class _RuleFields(TypedDict):
    name: str
    description: str
    enforcement_level: EnforcementLevel
    config_schema: PolicyConfigSchema
    remediation_steps: str


def _fields(name: str, description: str, remediation: str, config: Mapping[str, dict[str, Any]] | None) -> _RuleFields:
    """Every rule is mandatory unless the pack config lowers it, and accepts `environment` in its config."""
    return _RuleFields(
        name=name,
        description=description,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=_schema(config),
        remediation_steps=remediation,
    )


def resource_rule(
    name: str,
    description: str,
    validate: Callable[[ResourceValidationArgs, ReportViolation], None],
    remediation: str,
    config: Mapping[str, dict[str, Any]] | None = None,
) -> ResourceValidationPolicy:
    """A rule over one resource at a time."""
    return ResourceValidationPolicy(validate=validate, **_fields(name, description, remediation, config))


def stack_rule(
    name: str,
    description: str,
    validate: Callable[[StackValidationArgs, ReportViolation], None],
    remediation: str,
    config: Mapping[str, dict[str, Any]] | None = None,
) -> StackValidationPolicy:
    """A rule over the whole stack, for what depends on other resources."""
    return StackValidationPolicy(validate=validate, **_fields(name, description, remediation, config))
