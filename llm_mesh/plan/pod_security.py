"""The Pod Security Admission level of each namespace the stack makes (CIS GKE 4.2.1: every namespace enforces one).

Baseline everywhere the stack runs pods: Istio's CNI plugin sets up each pod's traffic capture, so sidecars need
no NET_ADMIN, and no workload asks for the host. Not restricted: vLLM's image runs as root (its only user), which
restricted refuses; pods are warned and audited against restricted all the same, so that every departure shows.
Privileged only where a DaemonSet must touch the node itself.
"""

from __future__ import annotations

from typing import Literal

from llm_mesh.plan.topology import ISTIO_NAMESPACE

Level = Literal["privileged", "baseline", "restricted"]
# Namespaces that cannot enforce baseline, and why.
PRIVILEGED_NAMESPACES: dict[str, str] = {
    ISTIO_NAMESPACE: "istio-cni's node agent writes the CNI configuration and binaries on every node (hostPath, "
    "privileged); istiod beside it runs as an unprivileged user",
}
# Capabilities a baseline pod may add (Kubernetes Pod Security Standards, baseline).
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
        "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }
)  # fmt: skip


def level_of(namespace: str) -> Level:
    return "privileged" if namespace in PRIVILEGED_NAMESPACES else "baseline"


def namespace_labels(namespace: str) -> dict[str, str]:
    """The labels Pod Security Admission reads, with the reason as a label-safe note where privileged."""
    return {
        "pod-security.kubernetes.io/enforce": level_of(namespace),
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }
