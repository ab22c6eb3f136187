"""IstioMesh: Istio from its official Helm charts, revision-tagged, with the ingress gateway and mesh config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.shared.manifests import declare
from llm_mesh.mesh import gateway_api
from llm_mesh.plan import inference
from llm_mesh.plan.config import GatewayConfig, IstioChart, IstioConfig, ObservabilityConfig, StackConfig
from llm_mesh.plan.images import ISTIO_HUB
from llm_mesh.plan.inference_pool import inference_gateway
from llm_mesh.plan.istio_values import base_values, cni_values, gateway_values, istiod_values, merged
from llm_mesh.plan.mesh_objects import gateway_object, gateway_rate_limit_object, telemetry_object
from llm_mesh.plan.pod_security import PRIVILEGED_NAMESPACES, namespace_labels
from llm_mesh.plan.topology import GATEWAY_RELEASE, INGRESS_NAMESPACE, ISTIO_NAMESPACE, application_namespaces


@dataclass(frozen=True)
class IstioMeshArgs:
    istio: IstioConfig
    gateway: GatewayConfig
    observability: ObservabilityConfig
    # The namespaces that get sidecars: the applications' and the trace collector's.
    application_namespaces: list[str]
    # How long a request through the gateway may still be running when a gateway pod is told to stop.
    drain_seconds: int
    # The project whose Cloud Trace each access log line links to, and the environment every span names.
    project: str
    environment: str
    # Where Istio's images come from (the charts' `global.hub`): Docker Hub's istio/, or the stack's mirror of it.
    hub: str = ISTIO_HUB
    # The Gateway API Gateway the gateway pods also serve, for models routed through InferencePools (with istiod's
    # support for them switched on); None when no model is.
    inference_gateway: gateway_api.Gateway | None = None

    @classmethod
    def from_config(cls, config: StackConfig, hub: str = ISTIO_HUB) -> IstioMeshArgs:
        namespaces = [*application_namespaces(config), config.observability.collector_namespace]
        return cls(
            config.istio,
            config.gateway,
            config.observability,
            list(dict.fromkeys(namespaces)),
            inference.grace_period_seconds(config.routing),
            config.gcp.project,
            config.environment,
            hub,
            inference_gateway(config),
        )


class IstioMesh(pulumi.ComponentResource):
    """Charts base, istio-cni, istiod (one per revision), gateway; namespaces; the Gateway and Telemetry objects."""

    def __init__(self, name: str, args: IstioMeshArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-mesh:mesh:IstioMesh", name, None, opts)
        istio = args.istio
        revision = istio.revision
        child = pulumi.ResourceOptions(parent=self)
        repository = k8s.helm.v3.RepositoryOptsArgs(repo=istio.chart_repository)

        def namespace(ns: str, labels: dict[str, str]) -> k8s.core.v1.Namespace:
            why = PRIVILEGED_NAMESPACES.get(ns)
            return k8s.core.v1.Namespace(
                f"{name}-ns-{ns}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=ns,
                    labels={**labels, **namespace_labels(ns)},
                    annotations={"llm-mesh/pod-security-privileged": why} if why else None,
                ),
                opts=child,
            )

        def release(
            release_name: str,
            chart: IstioChart,
            ns: str,
            values: dict[str, Any],
            after: list[pulumi.Resource],
            version: str = istio.version,
        ) -> k8s.helm.v3.Release:
            return k8s.helm.v3.Release(
                f"{name}-{release_name}",
                name=release_name,
                chart=chart,
                version=version,
                namespace=ns,
                repository_opts=repository,
                values=merged(values, istio.values.get(chart, {})),
                max_history=5,
                timeout=600,
                opts=pulumi.ResourceOptions(parent=self, depends_on=after),
            )

        pools = args.inference_gateway is not None
        system = namespace(ISTIO_NAMESPACE, {})
        ingress = namespace(INGRESS_NAMESPACE, {"istio.io/rev": revision})
        # Revision labels, not istio-injection=enabled: which control plane injects is chosen per namespace.
        self.namespaces = {ns: namespace(ns, {"istio.io/rev": revision}) for ns in args.application_namespaces}

        base = release("istio-base", "base", ISTIO_NAMESPACE, base_values(revision), [system])
        cni = release("istio-cni", "cni", ISTIO_NAMESPACE, cni_values(revision, args.hub), [base])
        self.istiod = release(
            f"istiod-{revision}",
            "istiod",
            ISTIO_NAMESPACE,
            istiod_values(revision, args.observability, args.project, args.hub, pools),
            [base, cni],
        )
        if istio.previous_version and istio.previous_revision:
            previous = istio.previous_revision
            values = istiod_values(previous, args.observability, args.project, args.hub, pools)
            release(f"istiod-{previous}", "istiod", ISTIO_NAMESPACE, values, [base, cni], istio.previous_version)
        self.gateway_release = release(
            GATEWAY_RELEASE,
            "gateway",
            INGRESS_NAMESPACE,
            gateway_values(
                revision,
                args.gateway,
                args.drain_seconds,
                args.inference_gateway.metadata.name if args.inference_gateway else None,
            ),
            [ingress, self.istiod],
        )
        # Istio's objects are validated by istiod's webhook: declare them once it runs.
        after_istiod = pulumi.ResourceOptions(parent=self, depends_on=[self.istiod])
        declare(gateway_object(args.gateway), after_istiod)
        if rate_limit := gateway_rate_limit_object(args.gateway):
            declare(rate_limit, after_istiod)
        declare(telemetry_object(args.observability, args.environment), after_istiod)
        if args.inference_gateway is not None:
            # Istio programs it on the chart's gateway pods (its addresses name their Service): after them.
            declare(args.inference_gateway, pulumi.ResourceOptions(parent=self, depends_on=[self.gateway_release]))
        self.register_outputs({"revision": revision})
