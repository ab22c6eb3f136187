"""Mesh security decided from config: STRICT mTLS everywhere, deny by default, named callers allowed.

Probes and metrics keep working under STRICT mTLS: Istio rewrites HTTP probes to the sidecar's agent
port and serves merged Prometheus metrics there (15020), which neither mTLS nor these policies cover.
"""

from __future__ import annotations

from llm_mesh.mesh.base import IstioObject, ObjectMeta, WorkloadSelector
from llm_mesh.mesh.security import (
    AuthorizationPolicy,
    AuthorizationPolicySpec,
    JWTRule,
    MutualTLS,
    Operation,
    PeerAuthentication,
    PeerAuthenticationSpec,
    RequestAuthentication,
    RequestAuthenticationSpec,
    Rule,
    RuleFrom,
    RuleTo,
    Source,
)
from llm_mesh.plan.config import StackConfig
from llm_mesh.plan.inference_pool import EXT_PROC_PATH, PICKER_PORT, all_pools
from llm_mesh.plan.topology import (
    GATEWAY_PRINCIPAL,
    GATEWAY_SELECTOR,
    INGRESS_NAMESPACE,
    ISTIO_NAMESPACE,
    MODEL_STORE,
    application_namespaces,
    model_names,
)

COMPLETION_PATHS = ["/v1/completions", "/v1/chat/completions"]
# Listing models is read-only and lets OpenAI clients discover the served name.
LISTING_PATHS = ["/v1/models"]


def strict_mtls(config: StackConfig) -> list[PeerAuthentication]:
    """Mesh-wide STRICT in the root namespace, and STRICT again per application namespace."""
    namespaces = [ISTIO_NAMESPACE, *application_namespaces(config)]
    return [
        PeerAuthentication(
            metadata=ObjectMeta(name="default", namespace=namespace),
            spec=PeerAuthenticationSpec(mtls=MutualTLS(mode="STRICT")),
        )
        for namespace in namespaces
    ]


def allow_nothing(namespace: str) -> AuthorizationPolicy:
    return AuthorizationPolicy(
        metadata=ObjectMeta(name="allow-nothing", namespace=namespace), spec=AuthorizationPolicySpec()
    )


def in_mesh_callers(config: StackConfig) -> list[str]:
    """The configured callers other than the gateway."""
    return [c for c in config.security.callers if c != GATEWAY_PRINCIPAL]


def callers(config: StackConfig) -> list[str]:
    """Who may call the models: the ingress gateway (every external request comes through it) unless the models
    are served inside the mesh only, and the configured in-mesh callers."""
    gateway = [GATEWAY_PRINCIPAL] if config.security.allow_gateway else []
    return [*gateway, *in_mesh_callers(config)]


def caller_sources(config: StackConfig) -> list[RuleFrom]:
    """With end-user authentication, requests through the gateway must also carry a token of the issuer
    (checked again at the pod, so a compromised gateway alone cannot call); in-mesh callers need only mTLS."""
    jwt = config.security.jwt
    if jwt is None or not config.security.allow_gateway:
        return [RuleFrom(source=Source(principals=callers(config)))]
    sources = [RuleFrom(source=Source(principals=[GATEWAY_PRINCIPAL], request_principals=[f"{jwt.issuer}/*"]))]
    others = in_mesh_callers(config)
    if others:
        sources.append(RuleFrom(source=Source(principals=others)))
    return sources


def inference_allow(config: StackConfig) -> list[AuthorizationPolicy]:
    policies = []
    for names in model_names(config):
        sources = caller_sources(config)
        policies.append(
            AuthorizationPolicy(
                metadata=ObjectMeta(name=f"{names.service}-callers", namespace=names.namespace),
                spec=AuthorizationPolicySpec(
                    selector=WorkloadSelector(match_labels=names.labels()),
                    action="ALLOW",
                    rules=[
                        Rule(from_=sources, to=[RuleTo(operation=Operation(methods=["POST"], paths=COMPLETION_PATHS))]),
                        Rule(from_=sources, to=[RuleTo(operation=Operation(methods=["GET"], paths=LISTING_PATHS))]),
                    ],
                ),
            )
        )
    return policies


def model_store_allow(config: StackConfig) -> AuthorizationPolicy:
    """Only the inference service accounts may read artifacts, and only read them."""
    readers = [names.principal for names in model_names(config)]
    return AuthorizationPolicy(
        metadata=ObjectMeta(name=f"{MODEL_STORE}-readers", namespace=config.model_store.namespace),
        spec=AuthorizationPolicySpec(
            selector=WorkloadSelector(match_labels={"app.kubernetes.io/name": MODEL_STORE}),
            action="ALLOW",
            rules=[
                Rule(
                    from_=[RuleFrom(source=Source(principals=readers))],
                    to=[RuleTo(operation=Operation(methods=["GET", "HEAD"], paths=["/models/*"]))],
                )
            ]
            if readers
            else None,
        ),
    )


def picker_allow(config: StackConfig) -> list[AuthorizationPolicy]:
    """Each endpoint picker takes one call: the gateway's ext_proc stream, on the picker's gRPC port. Its metrics
    port is outside the sidecar (its own token check guards it), and it calls nothing of the mesh's but the API
    server (and the servers' merged metrics, which are outside mTLS as managed Prometheus reads them)."""
    return [
        AuthorizationPolicy(
            metadata=ObjectMeta(name=f"{pool.picker}-gateway", namespace=pool.namespace),
            spec=AuthorizationPolicySpec(
                selector=WorkloadSelector(match_labels=pool.picker_labels),
                action="ALLOW",
                rules=[
                    Rule(
                        from_=[RuleFrom(source=Source(principals=[GATEWAY_PRINCIPAL]))],
                        to=[
                            RuleTo(
                                operation=Operation(ports=[str(PICKER_PORT)], methods=["POST"], paths=[EXT_PROC_PATH])
                            )
                        ],
                    )
                ],
            ),
        )
        for pool in all_pools(config)
    ]


def gateway_jwt(config: StackConfig) -> list[IstioObject]:
    """With a JWT issuer configured: validate tokens at the gateway and refuse requests without one."""
    jwt = config.security.jwt
    if jwt is None:
        return []
    selector = WorkloadSelector(match_labels=GATEWAY_SELECTOR)
    # The gateway passes the token on, so that the model pods can check the end user again.
    rule = JWTRule(
        issuer=jwt.issuer, jwks_uri=jwt.jwks_uri, audiences=jwt.audiences or None, forward_original_token=True
    )
    at_models = [
        RequestAuthentication(
            metadata=ObjectMeta(name=f"{names.service}-jwt", namespace=names.namespace),
            spec=RequestAuthenticationSpec(
                selector=WorkloadSelector(match_labels=names.labels()),
                jwt_rules=[rule.model_copy(update={"forward_original_token": None})],
            ),
        )
        for names in model_names(config)
    ]
    return [
        RequestAuthentication(
            metadata=ObjectMeta(name="gateway-jwt", namespace=INGRESS_NAMESPACE),
            spec=RequestAuthenticationSpec(selector=selector, jwt_rules=[rule]),
        ),
        # RequestAuthentication alone lets token-less requests through; this policy refuses them.
        AuthorizationPolicy(
            metadata=ObjectMeta(name="gateway-require-jwt", namespace=INGRESS_NAMESPACE),
            spec=AuthorizationPolicySpec(
                selector=selector,
                action="DENY",
                rules=[Rule(from_=[RuleFrom(source=Source(not_request_principals=["*"]))])],
            ),
        ),
        *at_models,
    ]


def security_objects(config: StackConfig) -> list[IstioObject]:
    objects: list[IstioObject] = [*strict_mtls(config)]
    objects += [allow_nothing(namespace) for namespace in application_namespaces(config)]
    objects += inference_allow(config)
    objects.append(model_store_allow(config))
    objects += picker_allow(config)
    objects += gateway_jwt(config)
    return objects
