"""NetworkPolicies: each namespace llm-mesh runs workloads in refuses connections by default, and each of our
workloads admits, on its own ports, exactly the callers the plan gives it.

Defence in depth under the mesh: Istio's authorization decides at L7 which identity may call which path; these
keep every other pod from reaching a port at all, enforced by GKE Dataplane V2 below the sidecar. Kubelet probes
come from the node, which a NetworkPolicy never blocks. Policies see a sidecar's inbound traffic on the
application's own port (the redirect to the proxy happens inside the pod).

Ingress only. Egress goes to Google APIs (no fixed address ranges), to the metadata server and to DNS (whose
addresses depend on the GKE version and on kube-dns, NodeLocal DNSCache or Cloud DNS): the stack cannot name them
as stable ranges, and the mesh's REGISTRY_ONLY egress already limits where sidecars send.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.shared.network_policies import admit_ingress, deny_ingress
from llm_mesh.plan.config import StackConfig
from llm_mesh.plan.network_peers import PodIngress, application_ingress
from llm_mesh.plan.topology import application_namespaces


@dataclass(frozen=True)
class NetworkPoliciesArgs:
    namespaces: list[str]
    rules: list[PodIngress]

    @classmethod
    def from_config(cls, config: StackConfig) -> NetworkPoliciesArgs:
        return cls(list(dict.fromkeys(application_namespaces(config))), application_ingress(config))


class NetworkPolicies(pulumi.ComponentResource):
    """Default deny per application namespace, then one admitting policy per workload."""

    def __init__(self, name: str, args: NetworkPoliciesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-mesh:network:NetworkPolicies", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        for namespace in args.namespaces:
            deny_ingress(f"{name}-{namespace}-default-deny", namespace, child)
        for rule in args.rules:
            admit_ingress(f"{name}-{rule.namespace}-{rule.name}", rule, child)
        self.register_outputs({})
