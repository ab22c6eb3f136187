"""What the rules share: the environment, resource kinds, quantities, and reading pod specs from workload props.

Props arrive as the engine presents them: camelCase input names, Kubernetes objects as `metadata`/`spec`, every
number a double (`1` arrives as `1.0`). During a preview a value may be unknown; reading it raises
UnknownValueError. A resource rule that meets one is reported by the engine (and the offline runner) as "not
evaluated" for that resource. A stack rule reads each resource on its own (`read_each`) and leaves out only the
resources it cannot read, saying so through `Skip`: one unknown must not switch the rule off for the whole stack.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, Protocol, TypedDict, TypeVar, runtime_checkable

import pulumi
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

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
T = TypeVar("T")

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


# A workload deliberately outside the mesh (an aggregated API server, which the Kubernetes API server calls without a
# mesh certificate) opts out on its pod template and says why; llm_mesh.plan.topology uses the same key.
OUTSIDE_MESH_ANNOTATION = "llm-mesh/outside-mesh"


def pod_annotations(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any]:
    if resource_type == "kubernetes:core/v1:Pod":
        return metadata(props).get("annotations") or {}
    template = spec(props).get("template") or {}
    if resource_type == "kubernetes:batch/v1:CronJob":
        template = (spec(props).get("jobTemplate") or {}).get("spec", {}).get("template") or {}
    return (template.get("metadata") or {}).get("annotations") or {}


def outside_mesh(resource_type: str, props: Mapping[str, Any]) -> bool:
    """Opted out of injection, with the reason stated: exempt from the rules that assume a sidecar."""
    annotations = pod_annotations(resource_type, props)
    return annotations.get("sidecar.istio.io/inject") == "false" and bool(annotations.get(OUTSIDE_MESH_ANNOTATION))


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


def plain(value: Any) -> Any:
    """A copy without the analyzer's proxies: reading it raises UnknownValueError now, not later in the rule."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(v) for v in value]
    return value


def labels_of(props: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in plain(metadata(props).get("labels") or {}).items()}


def selects(match_labels: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    """A label selector's matchLabels select an object when every pair is among its labels."""
    return all(labels.get(k) == v for k, v in match_labels.items())


_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?")
_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(10) ** e for s, e in (("n", -9), ("u", -6), ("m", -3), ("k", 3), ("M", 6), ("G", 9))},
    **{s: Decimal(10) ** e for s, e in (("T", 12), ("P", 15), ("E", 18))},
}


def quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity's amount: 1, 1.0 and "1" are equal, "500m" is 0.5, "1Gi" 1073741824; None if not one.

    Compared as amounts because the engine sends every number as a double: `1` in the program is `1.0` here.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match:
        return None
    number, exponent, suffix = match.groups()
    try:
        return Decimal(number + (exponent or "")) * _SUFFIXES.get(suffix or "", Decimal(1))
    except InvalidOperation:
        return None


def is_in_mesh_host(host: str, namespaces: set[str]) -> bool:
    """Short names, `<service>.<namespace>` for a namespace of the stack, and cluster-local names are in the mesh;
    anything else (`api.openai.com`, `github.com`) is external."""
    labels = host.split(".")
    if len(labels) == 1 or host.endswith((".svc", ".svc.cluster.local")):
        return True
    return len(labels) == 2 and labels[1] in namespaces


def helm_chart(resource_type: str, props: Mapping[str, Any]) -> str | None:
    """A Helm release's chart name: `gateway` for `gateway`, `istio/gateway` or a URL ending in it."""
    if resource_type != HELM_RELEASE_TYPE:
        return None
    return str(props.get("chart") or "").rsplit("/", 1)[-1] or None


def namespace_named(resource_type: str, props: Mapping[str, Any]) -> str | None:
    """The namespace a Kubernetes object declares (a Namespace) or lives in; None for other resources."""
    if not resource_type.startswith("kubernetes:"):
        return None
    meta = metadata(props)
    found = meta.get("name") if resource_type == NAMESPACE_TYPE else meta.get("namespace")
    return str(found) if found else None


# --- unknown values in stack rules

# (urn, reason): the rule left this resource out, or could not decide on it; "" is the stack.
Skip = Callable[[str, str], None]


@runtime_checkable
class RecordsNotEvaluated(Protocol):
    """A report_violation that also records what a stack rule left out (the offline runner's)."""

    def not_evaluated(self, urn: str, reason: str) -> None: ...


def skip_for(policy: str, report_violation: ReportViolation) -> Skip:
    """Where a stack rule says what it left out: the offline runner's report; under the Pulumi CLI, the analyzer's
    stderr, which the CLI shows (a diagnostic would carry the rule's mandatory level and block the update)."""
    if isinstance(report_violation, RecordsNotEvaluated):
        return report_violation.not_evaluated

    def warn(urn: str, reason: str) -> None:
        pulumi.log.warn(f"policy {policy} not evaluated on {urn or 'the stack'}: {reason}")

    return warn


@dataclass(frozen=True)
class Reading(Generic[T]):
    """What a stack rule read from each resource, and the resources it could not read (with the reason)."""

    found: list[tuple[PolicyResource, T]] = field(default_factory=list)
    unknown: list[tuple[PolicyResource, str]] = field(default_factory=list)

    def skip_unknown(self, skip: Skip) -> None:
        for resource, reason in self.unknown:
            skip(resource.urn, reason)

    def names(self) -> str:
        return ", ".join(r.name for r, _ in self.unknown)


def read_each(resources: Iterable[PolicyResource], read: Callable[[PolicyResource], T | None]) -> Reading[T]:
    """`read` on each resource, keeping what it returns unless None; `read` returns plain values (see `plain`), so
    that an unknown value leaves out its own resource here rather than stopping the rule later."""
    reading: Reading[T] = Reading()
    for resource in resources:
        try:
            value = read(resource)
        except UnknownValueError as unknown:
            reading.unknown.append((resource, unknown.message))
            continue
        if value is not None:
            reading.found.append((resource, value))
    return reading


def conclude(
    message: str,
    urn: str,
    undecided_by: Reading[Any],
    report_violation: ReportViolation,
    skip: Skip,
) -> None:
    """A violation found from what is missing, unless a resource the rule could not read may be what is missing:
    then the resource is reported as not evaluated, naming those resources."""
    if undecided_by.unknown:
        skip(urn, f"{message}, unless {undecided_by.names()} (unknown during preview) provides it")
    else:
        report_violation(message, urn)


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
    validate: Callable[[StackValidationArgs, ReportViolation, Skip], None],
    remediation: str,
    config: Mapping[str, dict[str, Any]] | None = None,
) -> StackValidationPolicy:
    """A rule over the whole stack, for what depends on other resources; `validate` also gets where to say which
    resources it left out because a value is unknown during preview."""

    def run(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        validate(args, report_violation, skip_for(name, report_violation))

    return StackValidationPolicy(validate=run, **_fields(name, description, remediation, config))
