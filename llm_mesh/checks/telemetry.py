"""Telemetry goes where the plan serves it. istiod's tracing providers and each server's `--otlp-traces-endpoint`
must name a Service the plan declares, on a port it exposes: spans sent anywhere else are dropped without a word
(istiod builds the tracer on a cluster with no endpoints; the OpenTelemetry SDK retries, then discards).

Reported as LM0103, as a route's destination is: a host no Service of the stack serves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from llm_mesh.checks.findings import Finding
from llm_mesh.checks.kube_objects import HELM_RELEASE
from llm_mesh.engine.readers import EngineResource

SERVICE = "kubernetes:core/v1:Service"
WORKLOADS = {"kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:DaemonSet"}
OTLP_FLAG = "--otlp-traces-endpoint"
OTLP_GRPC_PORT = 4317  # the OTLP/gRPC default, when an endpoint names none


def _fqdn(host: str) -> str:
    """Istio names a provider's service `[<namespace>/]<hostname>`; a Kubernetes host may be `name.namespace`."""
    host = host.rpartition("/")[2]
    if host.endswith(".svc.cluster.local"):
        return host
    return f"{host}.svc.cluster.local" if host.count(".") == 1 else host


def served_ports(resources: list[EngineResource]) -> dict[str, set[int]]:
    """Each declared Service's cluster-local host and the ports it exposes."""
    served: dict[str, set[int]] = {}
    for r in resources:
        if r.type != SERVICE:
            continue
        meta = r.inputs.get("metadata") or {}
        host = f"{meta.get('name')}.{meta.get('namespace', 'default')}.svc.cluster.local"
        ports = (r.inputs.get("spec") or {}).get("ports") or []
        served[host] = {int(float(p["port"])) for p in ports if p.get("port") is not None}
    return served


def _tracing_providers(release: EngineResource) -> Iterator[tuple[str, str, int]]:
    """(provider name, host, port) of every extension provider istiod's values name a service for."""
    mesh = (release.inputs.get("values") or {}).get("meshConfig") or {}
    for provider in mesh.get("extensionProviders") or []:
        for settings in provider.values():
            if isinstance(settings, Mapping) and settings.get("service") and settings.get("port") is not None:
                yield str(provider.get("name")), str(settings["service"]), int(float(settings["port"]))


def otlp_endpoints(container: Mapping[str, Any]) -> Iterator[str]:
    """The values a container's args give `--otlp-traces-endpoint` (`--flag value` or `--flag=value`)."""
    args = [str(a) for a in container.get("args") or []]
    for i, arg in enumerate(args):
        if arg == OTLP_FLAG and i + 1 < len(args):
            yield args[i + 1]
        elif arg.startswith(OTLP_FLAG + "="):
            yield arg.split("=", 1)[1]


def _unserved(served: dict[str, set[int]], host: str, port: int) -> str | None:
    fqdn = _fqdn(host)
    if fqdn not in served:
        return f"{host}, which no Service of the stack serves"
    if port not in served[fqdn]:
        return f"{host} port {port}, which its Service does not expose (it exposes {sorted(served[fqdn])})"
    return None


def telemetry_findings(resources: list[EngineResource]) -> list[Finding]:
    served = served_ports(resources)
    findings = []
    for release in resources:
        if release.type != HELM_RELEASE or release.inputs.get("chart") != "istiod":
            continue
        for provider, host, port in _tracing_providers(release):
            problem = _unserved(served, host, port)
            if problem:
                findings.append(
                    Finding(
                        "LM0103", "error", f"Release/{release.inputs.get('namespace', '')}/{release.inputs.get('name', '')}",
                        f"tracing provider {provider!r} sends the mesh's spans to {problem}",
                        "deploy the collector there (observability.otelCollectorHost names where the stack puts it)",
                    )
                )  # fmt: skip
    for workload in resources:
        if workload.type not in WORKLOADS:
            continue
        meta = workload.inputs.get("metadata") or {}
        pod = ((workload.inputs.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in pod.get("containers") or []:
            for endpoint in otlp_endpoints(container):
                parts = urlsplit(endpoint if "://" in endpoint else f"grpc://{endpoint}")
                problem = _unserved(served, parts.hostname or "", parts.port or OTLP_GRPC_PORT)
                if problem:
                    findings.append(
                        Finding(
                            "LM0103", "error", f"{workload.inputs.get('kind')}/{meta.get('namespace', '')}/{meta.get('name', '')}",
                            f"container {container.get('name')} sends its spans ({OTLP_FLAG}) to {problem}",
                            "point it at the stack's collector (observability.otelCollectorHost and otelCollectorPort)",
                        )
                    )  # fmt: skip
    return findings
