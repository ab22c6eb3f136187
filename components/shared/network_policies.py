"""The two NetworkPolicies every component declares from a plan (llm_mesh/plan/network_peers.py): a namespace's
default deny, and one workload's admitted peers."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from llm_mesh.plan.network_peers import Peer, PodIngress

meta = k8s.meta.v1
net = k8s.networking.v1


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
