"""What every pod llm-mesh runs shares: a restricted container and pod, zone spreading, mesh annotations, image pull
policy, and the scanner's suppressions (each with its reason)."""

from __future__ import annotations

import json

import pulumi_kubernetes as k8s

from llm_mesh.plan.config import image_pinned

core = k8s.core.v1

# The UID of every pod whose image allows any user: high, so that it is nobody on the node.
NON_ROOT_UID = 10001
SCANNER_SKIP = "checkov.io/skip"


def mesh_pod_annotations(drain_seconds: int | None = None) -> dict[str, str]:
    """Each pod waits for its proxy, and kubelet probes (which cannot present a mesh certificate) are answered
    by the sidecar: Istio's default, stated because STRICT mTLS depends on it.

    With `drain_seconds`, a proxy that is not a native sidecar (ENABLE_NATIVE_SIDECARS off) keeps serving the
    connections in flight as long as the application drains (its own default is 5 s), and exits as soon as none
    is left. A native sidecar needs neither: Kubernetes stops it only after the application has exited.
    """
    proxy: dict[str, object] = {"holdApplicationUntilProxyStarts": True}
    if drain_seconds is not None:
        proxy["terminationDrainDuration"] = f"{drain_seconds}s"
        proxy["proxyMetadata"] = {"EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "true"}
    return {
        "proxy.istio.io/config": json.dumps(proxy, sort_keys=True),
        "sidecar.istio.io/rewriteAppHTTPProbers": "true",
    }


def restricted(run_as_non_root: bool | None = None, read_only_root: bool | None = None) -> core.SecurityContextArgs:
    """No privilege escalation, no capabilities, RuntimeDefault seccomp; non-root where the image allows."""
    return core.SecurityContextArgs(
        run_as_non_root=run_as_non_root,
        read_only_root_filesystem=read_only_root,
        allow_privilege_escalation=False,
        capabilities=core.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
    )


def pod_security(
    run_as_user: int | None = NON_ROOT_UID, sysctls: dict[str, str] | None = None
) -> core.PodSecurityContextArgs:
    """RuntimeDefault seccomp for every container of the pod, injected sidecars included; with `run_as_user`
    (None for an image that needs root) every container runs as that non-root user unless it names its own,
    as istio-proxy (1337) and the GCS FUSE sidecar (65534) do."""
    return core.PodSecurityContextArgs(
        run_as_non_root=True if run_as_user is not None else None,
        run_as_user=run_as_user,
        run_as_group=run_as_user,
        seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
        sysctls=[core.SysctlArgs(name=k, value=v) for k, v in sysctls.items()] if sysctls else None,
    )


def pull_policy(image: str) -> str:
    """A digest never changes: the node's copy is the image. A tag may move: ask the registry on every start, so
    that every node runs what the tag names now (Kubernetes would keep whatever a node pulled first)."""
    return "IfNotPresent" if "@sha256:" in image else "Always"


def scanner_skips(reasons: dict[str, str]) -> dict[str, str]:
    """Annotations that suppress a Checkov check on this object, each with the reason it does not apply."""
    annotations = {}
    for number, (check, reason) in enumerate(sorted(reasons.items()), start=1):
        # Checkov splits the value on '=' into the check and its reason: a reason cannot hold one.
        if not reason.strip() or "=" in reason:
            raise ValueError(f"{check}: a suppression needs a reason without '=': {reason!r}")
        annotations[f"{SCANNER_SKIP}{number}"] = f"{check}={reason}"
    return annotations


def image_skips(*images: str) -> dict[str, str]:
    """CKV_K8S_43 (image by digest) where an image is referenced by a tag on purpose."""
    tagged = [image for image in images if "@sha256:" not in image]
    if not tagged:
        return {}
    if all(image_pinned(image) for image in tagged):
        return {
            "CKV_K8S_43": "a GKE release build whose -gke.N tag Google never moves (the policy pack counts it pinned)"
        }
    return {
        "CKV_K8S_43": "a tag on purpose outside prod (dev and staging follow tags); "
        "in prod the policy prod-images-pinned-by-digest refuses any tag"
    }


def zone_spread(labels: dict[str, str]) -> list[core.TopologySpreadConstraintArgs]:
    """Replicas across zones when capacity allows (GPU capacity often does not: never block scheduling)."""
    return [
        core.TopologySpreadConstraintArgs(
            max_skew=1,
            topology_key="topology.kubernetes.io/zone",
            when_unsatisfiable="ScheduleAnyway",
            label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
        )
    ]


def node_spread(labels: dict[str, str], required: bool = False) -> list[core.TopologySpreadConstraintArgs]:
    """Replicas on different nodes: one node drained or preempted takes one of them. Required, the scheduler
    (and the cluster autoscaler, which plans nodes by it) never puts two on one node; else when capacity allows."""
    return [
        core.TopologySpreadConstraintArgs(
            max_skew=1,
            topology_key="kubernetes.io/hostname",
            when_unsatisfiable="DoNotSchedule" if required else "ScheduleAnyway",
            label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
        )
    ]
