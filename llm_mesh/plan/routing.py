"""Mesh routing for one served model: the DestinationRule and VirtualService, decided from config."""

from __future__ import annotations

from llm_mesh.mesh.base import ObjectMeta
from llm_mesh.mesh.networking import (
    ClientTLSSettings,
    ConnectionPoolSettings,
    Destination,
    DestinationRule,
    DestinationRuleSpec,
    HTTPMatchRequest,
    HTTPRetry,
    HTTPRoute,
    HTTPRouteDestination,
    HTTPSettings,
    LoadBalancerSettings,
    OutlierDetection,
    Percent,
    StringMatch,
    Subset,
    TCPSettings,
    TrafficPolicy,
    VirtualService,
    VirtualServiceSpec,
)
from llm_mesh.plan.config import RoutingConfig
from llm_mesh.plan.topology import ModelNames, gateway_ref


def destination_rule(names: ModelNames, routing: RoutingConfig) -> DestinationRule:
    policy = TrafficPolicy(
        tls=ClientTLSSettings(mode="ISTIO_MUTUAL"),
        # One generation occupies a GPU slot for seconds to minutes: send new work to the least busy replica.
        load_balancer=LoadBalancerSettings(simple="LEAST_REQUEST"),
        connection_pool=ConnectionPoolSettings(
            tcp=TCPSettings(max_connections=routing.max_connections, connect_timeout="10s"),
            http=HTTPSettings(
                http1_max_pending_requests=routing.http1_max_pending_requests,
                max_requests_per_connection=routing.max_requests_per_connection,
                # OpenAI-compatible servers speak HTTP/1.1 and stream with server-sent events.
                h2_upgrade_policy="DO_NOT_UPGRADE",
            ),
        ),
        outlier_detection=OutlierDetection(
            consecutive_5xx_errors=routing.consecutive_5xx_errors,
            interval=routing.outlier_interval,
            base_ejection_time=routing.base_ejection_time,
            max_ejection_percent=routing.max_ejection_percent,
        ),
    )
    return DestinationRule(
        metadata=ObjectMeta(name=names.service, namespace=names.namespace),
        spec=DestinationRuleSpec(
            host=names.host,
            traffic_policy=policy,
            subsets=[Subset(name=track, labels=names.labels(track)) for track in names.tracks],
        ),
    )


def virtual_service(names: ModelNames, routing: RoutingConfig, through_gateway: bool = True) -> VirtualService:
    model = names.model
    retries = HTTPRetry(attempts=routing.retry_attempts, retry_on=routing.retry_on, per_try_timeout=routing.timeout)
    mirror = Destination(host=names.host, subset="mirror") if model.mirror else None
    mirror_percentage = Percent(value=model.mirror.percentage) if model.mirror else None

    def route(name: str, weights: dict[str, int], match: list[HTTPMatchRequest] | None = None) -> HTTPRoute:
        destinations = [
            HTTPRouteDestination(
                destination=Destination(host=names.host, subset=subset), weight=weight if len(weights) > 1 else None
            )
            for subset, weight in weights.items()
        ]
        return HTTPRoute(
            name=name,
            match=match,
            route=destinations,
            timeout=routing.timeout,
            retries=retries,
            mirror=mirror,
            mirror_percentage=mirror_percentage,
        )

    routes = []
    if model.canary is not None and model.canary_weight > 0:
        # Callers inside the mesh only: through the public gateway, any token holder could send all its traffic to
        # the canary's few pods, load them beyond the weight and skew the canary's analysis.
        pin = HTTPMatchRequest(
            name="canary-header", headers={routing.canary_header: StringMatch(exact="true")}, gateways=["mesh"]
        )
        routes.append(route("canary-pinned", {"canary": 100}, [pin]))
        routes.append(route("weighted", {"stable": 100 - model.canary_weight, "canary": model.canary_weight}))
    else:
        # At weight zero the canary runs no pods: a pinned request would find no upstream, so none is routed there.
        routes.append(route("stable", {"stable": 100}))
    return VirtualService(
        metadata=ObjectMeta(name=names.service, namespace=names.namespace),
        # Bound to the ingress gateway (at <model>.<domain>) unless the models are served inside the mesh only.
        spec=VirtualServiceSpec(
            hosts=[names.external_host, names.host] if through_gateway else [names.host],
            gateways=[gateway_ref(), "mesh"] if through_gateway else ["mesh"],
            http=routes,
        ),
    )
