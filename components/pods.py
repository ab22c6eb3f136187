"""What every pod llm-mesh runs in the mesh shares: a restricted container, zone spreading, mesh annotations."""

from __future__ import annotations

import json

import pulumi_kubernetes as k8s

core = k8s.core.v1


def mesh_pod_annotations(drain_seconds: int | None = None) -> dict[str, str]:
    """Each pod waits for its proxy, and kubelet probes (which cannot present a mesh certificate) are answered
    by the sidecar: Istio's default, stated because STRICT mTLS depends on it.

    With `drain_seconds`, the proxy keeps serving the connections in flight as long as the application drains
    (its own default is 5 s), and exits as soon as none is left rather than waiting that long.
    """
    proxy: dict[str, object] = {"holdApplicationUntilProxyStarts": True}
    if drain_seconds is not None:
        proxy["terminationDrainDuration"] = f"{drain_seconds}s"
        proxy["proxyMetadata"] = {"EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "true"}
    return {
        "proxy.istio.io/config": json.dumps(proxy, sort_keys=True),
        "sidecar.istio.io/rewriteAppHTTPProbers": "true",
    }


def restricted(
    run_as_non_root: bool | None = None, read_only_root: bool | None = None, add_capabilities: list[str] | None = None
) -> core.SecurityContextArgs:
    """No privilege escalation, no capabilities, RuntimeDefault seccomp; non-root where the image allows."""
    return core.SecurityContextArgs(
        run_as_non_root=run_as_non_root,
        read_only_root_filesystem=read_only_root,
        allow_privilege_escalation=False,
        capabilities=core.CapabilitiesArgs(drop=["ALL"], add=add_capabilities),
        seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
    )


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
