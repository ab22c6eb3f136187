"""Engine resources as the policy pack receives them, and the rule runs the policy tests share."""

from __future__ import annotations

from typing import Any

from llm_mesh_policies import POLICIES

from llm_mesh.checks.policy_runner import run_policies
from llm_mesh.engine.readers import EngineResource
from tests.conftest import ROOT

BY_NAME = {p.name: p for p in POLICIES}


DIGEST = "@sha256:" + "0" * 64


GPU = "nvidia.com/gpu"


PACK = ROOT / "policies"


def urn(stack: str, type_: str, name: str) -> str:
    return f"urn:pulumi:{stack}::llm-mesh::{type_}::{name}"


def k8s(
    kind: str, api: str, namespace: str, name: str, spec: dict[str, Any], stack: str = "prod", **meta: Any
) -> EngineResource:
    type_ = f"kubernetes:{api}:{kind}" if "/" in api else f"kubernetes:core/{api}:{kind}"
    inputs = {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace, **meta}, "spec": spec}
    if kind == "Namespace":
        inputs = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, **meta}}
    return EngineResource(urn=urn(stack, type_, f"{namespace}-{name}"), type=type_, custom=True, inputs=inputs)


def gcp(type_: str, name: str, inputs: dict[str, Any], stack: str = "prod", protect: bool = False) -> EngineResource:
    return EngineResource(urn=urn(stack, type_, name), type=type_, custom=True, inputs=inputs, protect=protect)


def violations(policy: str, resources: list[EngineResource], **kwargs: Any) -> list[str]:
    report = run_policies([BY_NAME[policy]], resources, **kwargs)
    assert not report.not_evaluated
    return [v.message for v in report.violations]


def found(policy: str, resources: list[EngineResource], **kwargs: Any) -> tuple[list[tuple[str, str]], list[Any]]:
    """(message, urn) of each violation, and what was not evaluated: (urn, reason)."""
    report = run_policies([BY_NAME[policy]], resources, **kwargs)
    return [(v.message, v.urn) for v in report.violations], [(u, why) for _, u, why in report.not_evaluated]


def pa(namespace: str, spec: dict[str, Any] | None = None, name: str = "default") -> EngineResource:
    return k8s("PeerAuthentication", "security.istio.io/v1", namespace, name, spec or {})


STRICT = {"mtls": {"mode": "STRICT"}}


MESH_WIDE = pa("istio-system", STRICT)


def deployment(namespace: str, container: dict[str, Any], **pod: Any) -> EngineResource:
    template = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [container], **pod}}
    return k8s("Deployment", "apps/v1", namespace, "server", {"template": template})


GPU_CONTAINER = {
    "name": "server",
    "image": "vllm/vllm-openai" + DIGEST,
    "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}},
}


GPU_TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def dr(host: str, **policy: Any) -> EngineResource:
    return k8s("DestinationRule", "networking.istio.io/v1", "inference", "llama", {"host": host, **policy})


def namespace(name: str, labels: dict[str, str]) -> EngineResource:
    return k8s("Namespace", "v1", "", name, {}, labels=labels)


ALLOW_NOTHING = k8s("AuthorizationPolicy", "security.istio.io/v1", "inference", "allow-nothing", {})


ISTIOD = gcp(
    "kubernetes:helm.sh/v3:Release", "istiod", {"chart": "istiod", "version": "1.31.1", "values": {"revision": "1-31"}}
)


HARDENED = {
    "workloadIdentityConfig": {"workloadPool": "p.svc.id.goog"},
    "privateClusterConfig": {"enablePrivateNodes": True},
    "enableShieldedNodes": True,
    "releaseChannel": {"channel": "REGULAR"},
    "enableLegacyAbac": False,
    "masterAuth": {"clientCertificateConfig": {"issueClientCertificate": False}},
    "deletionProtection": True,
    "binaryAuthorization": {"evaluationMode": "PROJECT_SINGLETON_POLICY_ENFORCE"},
    "nodePoolDefaults": {"nodeConfigDefaults": {"insecureKubeletReadonlyPortEnabled": "FALSE"}},
    "databaseEncryption": {"state": "ENCRYPTED", "keyName": "projects/p/locations/r/keyRings/k/cryptoKeys/s"},
    "masterAuthorizedNetworksConfig": {"cidrBlocks": [{"cidrBlock": "198.51.100.0/24", "displayName": "ci"}]},
    "controlPlaneEndpointsConfig": {
        "dnsEndpointConfig": {
            "allowExternalTraffic": True,
            "enableK8sTokensViaDns": False,
            "enableK8sCertsViaDns": False,
        }
    },
}


BUCKET = {"uniformBucketLevelAccess": True, "publicAccessPrevention": "enforced", "versioning": {"enabled": True}}


UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


LB_TYPE = "networking.gke.io/load-balancer-type"


GATEWAY = k8s(
    "Gateway",
    "networking.istio.io/v1",
    "istio-ingress",
    "llm-gateway",
    {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 443.0, "name": "https", "protocol": "HTTPS"}, "hosts": ["*.llm.example.com"]}],
    },
)


def virtual_service(gateways: list[str], namespace: str = "inference", stack: str = "prod") -> EngineResource:
    route = [{"destination": {"host": "llama-31-8b.inference.svc.cluster.local", "subset": "stable"}}]
    body = {"hosts": ["llama-31-8b.llm.example.com"], "gateways": gateways, "http": [{"route": route}]}
    return k8s("VirtualService", "networking.istio.io/v1", namespace, "llama-31-8b", body, stack)


def gateway_release(service: dict[str, Any] | None = None, labels: dict[str, str] | None = None) -> EngineResource:
    values = {"service": service or {"type": "LoadBalancer"}, "labels": labels or {"istio": "ingressgateway"}}
    inputs = {"chart": "gateway", "name": "istio-ingressgateway", "namespace": "istio-ingress", "values": values}
    return gcp("kubernetes:helm.sh/v3:Release", "istio-ingressgateway", {**inputs, "version": "1.31.1"})


def request_authentication(namespace: str = "istio-ingress", **body: Any) -> EngineResource:
    jwt = {
        "jwtRules": [{"issuer": "https://accounts.google.com", "jwksUri": "https://www.googleapis.com/oauth2/v3/certs"}]
    }
    return k8s("RequestAuthentication", "security.istio.io/v1", namespace, "jwt", {**jwt, **body})


def authorization(body: dict[str, Any], namespace: str = "istio-ingress", name: str = "require-jwt") -> EngineResource:
    return k8s("AuthorizationPolicy", "security.istio.io/v1", namespace, name, body)


EXPOSED = [GATEWAY, virtual_service(["istio-ingress/llm-gateway", "mesh"])]


NO_JWT = (
    "and no RequestAuthentication with jwtRules together with an AuthorizationPolicy requiring a request "
    "principal covers its pods in istio-ingress"
)


EXTERNAL = f"Helm release istio-ingressgateway's Service is an internet-facing LoadBalancer, {NO_JWT}"


def anonymous(reason: str, services: str = "inference/llama-31-8b") -> str:
    return (
        f"Gateway istio-ingress/llm-gateway serves inference (VirtualService {services}) to anonymous callers: {reason}"
    )
