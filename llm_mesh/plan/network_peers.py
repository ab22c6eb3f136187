"""Which peers may open a connection to which of our workloads, on which port: the NetworkPolicies' plan.

Defence in depth under the mesh: Istio's authorization decides at L7 which identity may call which path; these
keep every other pod from reaching a port at all. Ingress only (components/network_policy.py says why).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_mesh.plan import inference
from llm_mesh.plan.authz import in_mesh_callers
from llm_mesh.plan.config import StackConfig
from llm_mesh.plan.inference_pool import PICKER_METRICS_PORT, PICKER_PORT, all_pools, pools_of
from llm_mesh.plan.topology import (
    GATEWAY_SELECTOR,
    INGRESS_NAMESPACE,
    MERGED_METRICS_PORT,
    MODEL_STORE_LABELS,
    MODEL_STORE_PORT,
    WEIGHTS_GATE_LABELS,
    ModelNames,
    model_names,
)

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

    def metric_readers(names: ModelNames) -> list[Peer]:
        # A pooled model's endpoint pickers read each server's queue and KV-cache gauges where Prometheus does.
        pickers = [Peer(pool.namespace, pool.picker_labels) for pool in pools_of(names)] if names.model.pooled else []
        return [*scrapers, *pickers]

    rules = [
        PodIngress(
            f"{names.service}-callers",
            names.namespace,
            names.labels(),
            # The gateway's and in-mesh callers' sidecars (canary and mirror copies too); the merged metrics.
            [Admit(inference.SERVER_PORT, api_callers), Admit(MERGED_METRICS_PORT, metric_readers(names))],
        )
        for names in model_names(config)
    ]
    # Each endpoint picker: the gateway's ext_proc calls, and managed Prometheus on its own metrics port.
    rules += [
        PodIngress(
            pool.picker,
            pool.namespace,
            pool.picker_labels,
            [Admit(PICKER_PORT, [gateway]), Admit(PICKER_METRICS_PORT, scrapers)],
        )
        for pool in all_pools(config)
    ]
    # Each of our workloads names its ingress, even none: the namespace's default covers pods of others.
    rules.append(PodIngress("weights-gate", config.inference.namespace, WEIGHTS_GATE_LABELS, []))
    # Servers' fetch init containers and the weights gates read the store.
    readers = [Peer(config.inference.namespace)]
    rules.append(
        PodIngress(
            "model-store-readers", config.model_store.namespace, MODEL_STORE_LABELS, [Admit(MODEL_STORE_PORT, readers)]
        )
    )
    return rules


def trace_senders(config: StackConfig) -> list[Peer]:
    """Pods whose proxies (or servers) export spans to the collector: the gateway, and the namespaces that serve
    or call the models."""
    return [
        Peer(INGRESS_NAMESPACE, GATEWAY_SELECTOR),
        Peer(config.inference.namespace),
        Peer(config.model_store.namespace),
        *(Peer(namespace) for namespace in caller_namespaces(config)),
    ]
