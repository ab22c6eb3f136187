"""Names the components and the mesh analysis must agree on: namespaces, service accounts, hosts, labels."""

from __future__ import annotations

from dataclasses import dataclass

from llm_mesh.plan.config import GatewayConfig, ServedModel, StackConfig

ISTIO_NAMESPACE = "istio-system"  # Istio's root namespace: mesh-wide policy lives here
INGRESS_NAMESPACE = "istio-ingress"
GATEWAY_RELEASE = "istio-ingressgateway"  # the gateway chart names its service account after the release
GATEWAY_SELECTOR = {"istio": "ingressgateway"}
GATEWAY_NAME = "llm-gateway"
TRUST_DOMAIN = "cluster.local"
MODEL_STORE = "model-store"
TRACK_LABEL = "version"  # Istio's conventional label for subsets
POOL_LABEL = "llm-mesh/pool"  # on every node: which node pool it belongs to
# The model's GPU-fit inputs on each server pod, so that `llm-mesh validate` can redo the arithmetic from a plan.
SHAPE_ANNOTATION = "llm-mesh/model-shape"
# A workload deliberately outside the mesh says why on its pod template; the injection checks accept it.
OUTSIDE_MESH_ANNOTATION = "llm-mesh/outside-mesh"
SERVER_PORT = 8000  # the model server's OpenAI-compatible API
MERGED_METRICS_PORT = 15020  # istio-proxy's agent serves app and proxy metrics here, outside mTLS
WEIGHTS_GATE_LABELS = {"llm-mesh/role": "weights-gate"}
MODEL_STORE_PORT = 8080  # nginx-unprivileged listens here, as a non-root user
MODEL_STORE_LABELS = {"app.kubernetes.io/name": MODEL_STORE, "app.kubernetes.io/part-of": "llm-mesh"}
# GKE's metadata server must stay reachable past the sidecar: the GCS FUSE driver gets its token there.
METADATA_SERVER = "169.254.169.254/32"


def principal(namespace: str, service_account: str) -> str:
    return f"{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


GATEWAY_PRINCIPAL = principal(INGRESS_NAMESPACE, GATEWAY_RELEASE)


@dataclass(frozen=True)
class ModelNames:
    """Where one served model lives in the cluster."""

    model: ServedModel
    namespace: str
    domain: str

    @property
    def service(self) -> str:
        return self.model.name

    @property
    def service_account(self) -> str:
        return self.model.name

    @property
    def host(self) -> str:
        return f"{self.service}.{self.namespace}.svc.cluster.local"

    @property
    def external_host(self) -> str:
        return f"{self.model.name}.{self.domain}"

    @property
    def principal(self) -> str:
        return principal(self.namespace, self.service_account)

    def labels(self, track: str | None = None) -> dict[str, str]:
        base = {"app.kubernetes.io/name": self.model.name, "app.kubernetes.io/part-of": "llm-mesh"}
        return {**base, TRACK_LABEL: track} if track else base

    @property
    def tracks(self) -> list[str]:
        """The tracks deployed: stable always, canary and mirror when configured."""
        return [track for track, _ in self.model.tracks()]


def model_names(config: StackConfig) -> list[ModelNames]:
    return [ModelNames(m, config.inference.namespace, config.gateway.domain) for m in config.models]


def application_namespaces(config: StackConfig) -> list[str]:
    """Namespaces that run our workloads: each gets injection, STRICT mTLS and an allow-nothing policy."""
    return [config.inference.namespace, config.model_store.namespace]


def gateway_ref() -> str:
    return f"{INGRESS_NAMESPACE}/{GATEWAY_NAME}"


# The cluster autoscaler's pod annotation: "false" keeps it from evicting the pod to remove its node.
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"


def serving_port(gateway: GatewayConfig) -> tuple[int, str]:
    """The one port the gateway serves on: 443 with TLS, else 80. With TLS there is no plaintext port at all, not
    even a redirect: an API client pointed at http:// would send its bearer token in the clear before the 301."""
    return (443, "https") if gateway.tls_credential_name else (80, "http")
