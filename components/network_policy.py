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

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.inference import MERGED_METRICS_PORT, WEIGHTS_GATE_LABELS
from components.model_store import SERVER_LABELS as STORE_LABELS
from components.model_store import SERVER_PORT as STORE_PORT
from llm_mesh.plan import inference
from llm_mesh.plan.authz import in_mesh_callers
from llm_mesh.plan.config import StackConfig
from llm_mesh.plan.topology import GATEWAY_SELECTOR, INGRESS_NAMESPACE, application_namespaces, model_names

meta = k8s.meta.v1
net = k8s.networking.v1
# Google Cloud Managed Service for Prometheus: its collectors scrape the pods of their node from here.
MANAGED_PROMETHEUS_NAMESPACE = "gmp-system"


@dataclass(frozen=True)
class Peer:
    """Who may connect: the pods of a namespace (those with `pod_labels` only, if given)."""

    namespace: str
    pod_labels: dict[str, str] | None = None


@dataclass(frozen=True)
class Admit:
    """One port and who may connect to it; no peers: anyone."""

    port: int
    peers: list[Peer] = field(default_factory=list)


@dataclass(frozen=True)
class PodIngress:
    """The pods with `pod_labels` in `namespace` take connections on these ports only (none: no connection)."""

    name: str
    namespace: str
    pod_labels: dict[str, str]
    admits: list[Admit]


def caller_namespaces(config: StackConfig) -> list[str]:
    """Namespaces of the in-mesh callers besides the gateway (whose pods are named on their own)."""
    # A principal is validated as cluster.local/ns/<namespace>/sa/<account>.
    return list(dict.fromkeys(principal.split("/")[2] for principal in in_mesh_callers(config)))


def application_ingress(config: StackConfig) -> list[PodIngress]:
    """The connections the plan makes to the application namespaces, and nothing else."""
    gateway = Peer(INGRESS_NAMESPACE, GATEWAY_SELECTOR)
    api_callers = [
        *([gateway] if config.security.allow_gateway else []),
        *(Peer(ns) for ns in caller_namespaces(config)),
    ]
    scrapers = [Peer(MANAGED_PROMETHEUS_NAMESPACE)]
    rules = [
        PodIngress(
            f"{names.service}-callers",
            names.namespace,
            names.labels(),
            # The gateway's and in-mesh callers' sidecars (canary and mirror copies too); the merged metrics.
            [Admit(inference.SERVER_PORT, api_callers), Admit(MERGED_METRICS_PORT, scrapers)],
        )
        for names in model_names(config)
    ]
    # Each of our workloads names its ingress, even none: the namespace's default covers pods of others.
    rules.append(PodIngress("weights-gate", config.inference.namespace, WEIGHTS_GATE_LABELS, []))
    # Servers' fetch init containers and the weights gates read the store.
    readers = [Peer(config.inference.namespace)]
    rules.append(
        PodIngress("model-store-readers", config.model_store.namespace, STORE_LABELS, [Admit(STORE_PORT, readers)])
    )
    return rules


def deny_ingress(resource_name: str, namespace: str, opts: pulumi.ResourceOptions) -> net.NetworkPolicy:
    """Every pod of the namespace takes no connection unless a policy of its own admits it."""
    return net.NetworkPolicy(
        resource_name,
        metadata=meta.ObjectMetaArgs(name="default-deny-ingress", namespace=namespace),
        spec=net.NetworkPolicySpecArgs(pod_selector=meta.LabelSelectorArgs(), policy_types=["Ingress"]),
        opts=opts,
    )


def _peer(peer: Peer) -> net.NetworkPolicyPeerArgs:
    return net.NetworkPolicyPeerArgs(
        namespace_selector=meta.LabelSelectorArgs(match_labels={"kubernetes.io/metadata.name": peer.namespace}),
        pod_selector=meta.LabelSelectorArgs(match_labels=peer.pod_labels) if peer.pod_labels else None,
    )


def admit_ingress(resource_name: str, rule: PodIngress, opts: pulumi.ResourceOptions) -> net.NetworkPolicy:
    return net.NetworkPolicy(
        resource_name,
        metadata=meta.ObjectMetaArgs(name=rule.name, namespace=rule.namespace),
        spec=net.NetworkPolicySpecArgs(
            pod_selector=meta.LabelSelectorArgs(match_labels=rule.pod_labels),
            policy_types=["Ingress"],
            ingress=[
                net.NetworkPolicyIngressRuleArgs(
                    ports=[net.NetworkPolicyPortArgs(port=admit.port, protocol="TCP")],
                    from_=[_peer(p) for p in admit.peers] or None,
                )
                for admit in rule.admits
            ],
        ),
        opts=opts,
    )


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
