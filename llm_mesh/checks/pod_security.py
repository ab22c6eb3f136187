"""Would Pod Security Admission admit each pod the plan declares? The baseline controls, read from the pod
templates against their namespace's enforced level (llm_mesh.plan.pod_security). Codes: LM0120 a pod its
namespace's level would refuse; LM0121 a namespace the plan makes that enforces no level (CIS GKE 4.2.1).

Pods a Helm release makes (Istio's charts) are not in the plan: only the cluster sees them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from llm_mesh.checks.findings import Finding
from llm_mesh.engine.readers import EngineResource
from llm_mesh.plan.pod_security import BASELINE_CAPABILITIES

POD_TEMPLATES = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:batch/v1:Job",
}
ENFORCE = "pod-security.kubernetes.io/enforce"


def pod_security_findings(resources: list[EngineResource]) -> list[Finding]:
    levels = {
        str((r.inputs.get("metadata") or {}).get("name")): str(
            ((r.inputs.get("metadata") or {}).get("labels") or {}).get(ENFORCE, "")
        )
        for r in resources
        if r.type == "kubernetes:core/v1:Namespace"
    }
    findings = [
        Finding(
            "LM0121", "error", f"Namespace/{name}",
            "enforces no Pod Security level: any pod, privileged or on the host's namespaces, is admitted",
            "label it pod-security.kubernetes.io/enforce (baseline where pods need no more; privileged saying why)",
        )
        for name, level in levels.items()
        if not level
    ]  # fmt: skip
    for r in resources:
        if r.type not in POD_TEMPLATES:
            continue
        meta = r.inputs.get("metadata") or {}
        namespace = str(meta.get("namespace", "default"))
        if levels.get(namespace) not in ("baseline", "restricted"):
            continue
        pod = ((r.inputs.get("spec") or {}).get("template") or {}).get("spec") or {}
        for breach in baseline_breaches(pod):
            findings.append(
                Finding(
                    "LM0120", "error", f"{r.inputs.get('kind')}/{namespace}/{meta.get('name', '')}",
                    f"namespace {namespace} enforces Pod Security {levels[namespace]}, and the pod {breach}: its "
                    "pods would be refused",
                    "drop what the level forbids, or run the workload in a namespace of a lower level, saying why",
                )
            )  # fmt: skip
    return findings


def baseline_breaches(pod: Mapping[str, Any]) -> Iterator[str]:
    """What in a pod spec the baseline level refuses (the controls a declared pod can break)."""
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            yield f"sets {host}"
    for volume in pod.get("volumes") or []:
        if "hostPath" in volume:
            yield f"mounts hostPath volume {volume.get('name')!r}"
    for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        name = container.get("name")
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            yield f"runs container {name!r} privileged"
        added = set((context.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if added:
            yield f"adds capabilities {sorted(added)} to container {name!r}"
        if context.get("procMount", "Default") != "Default":
            yield f"sets procMount {context['procMount']!r} on container {name!r}"
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                yield f"binds host port {port['hostPort']} in container {name!r}"
