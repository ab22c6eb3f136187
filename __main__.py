"""llm-mesh: a GPU inference platform on GKE behind Istio, one `pulumi up` per environment."""

import pulumi

from components.cluster import GpuCluster, GpuClusterArgs
from components.gateway_crds import GatewayApiCrds
from components.image_mirror import ImageMirror, ImageMirrorArgs
from components.inference import InferenceService, InferenceServiceArgs
from components.inference_routing import InferenceRouting, InferenceRoutingArgs
from components.istio import IstioMesh, IstioMeshArgs
from components.mesh_policy import MeshRouting, MeshSecurity
from components.metrics_adapter import MetricsAdapter, MetricsAdapterArgs
from components.model_store import ModelStore, ModelStoreArgs
from components.network_policy import NetworkPolicies, NetworkPoliciesArgs
from components.observability import Observability, ObservabilityArgs
from llm_mesh.plan.authz import security_objects
from llm_mesh.plan.config import load_stack_config
from llm_mesh.plan.gcp_names import cluster_name
from llm_mesh.plan.images import istio_hub, through_mirror
from llm_mesh.plan.inference import SERVER_PORT, version_of
from llm_mesh.plan.topology import model_names

# Validated before anything is declared: a bad stack file stops here with the key, the value and the fix.
config = load_stack_config()
stack = pulumi.get_stack()

# Docker Hub's images through the stack's Artifact Registry mirror: from here on, the config names them there.
mirror_args = ImageMirrorArgs.from_config(config, stack)
mirror = ImageMirror("images", mirror_args).host if mirror_args else None
config = through_mirror(config, mirror)

cluster = GpuCluster("gpu", GpuClusterArgs.from_config(config, stack))
on_cluster = pulumi.ResourceOptions(providers=[cluster.provider])
# Models routed through InferencePools need the Gateway API's and the Inference Extension's CRDs before istiod
# watches them and before any such object is declared.
crds = [GatewayApiCrds("gateway-api-crds", on_cluster)] if config.pooled_models() else []
mesh_opts = pulumi.ResourceOptions(providers=[cluster.provider], depends_on=crds)
mesh = IstioMesh("istio", IstioMeshArgs.from_config(config, istio_hub(mirror)), mesh_opts)

# Mesh objects need Istio's CRDs and istiod's webhook, and their namespaces: all come with the mesh.
in_mesh = pulumi.ResourceOptions(providers=[cluster.provider], depends_on=[mesh])
MeshSecurity("mesh-security", security_objects(config), in_mesh)
NetworkPolicies("network-policies", NetworkPoliciesArgs.from_config(config), in_mesh)
store = ModelStore("models", ModelStoreArgs.from_config(config, stack), in_mesh)
# Autoscalers read vLLM's queue depth from managed Prometheus through the adapter: deployed with them.
adapters = []
if config.autoscaled_models():
    adapter_args = MetricsAdapterArgs.from_config(config, cluster_name(config, stack))
    adapters.append(MetricsAdapter("metrics-adapter", adapter_args, on_cluster))
# Servers start after the store serves (and each track's weights gate has seen its files there).
serving = pulumi.ResourceOptions(providers=[cluster.provider], depends_on=[mesh, store, *adapters])
for names in model_names(config):
    InferenceService(
        f"model-{names.model.name}", InferenceServiceArgs.for_model(config, names, cluster_name(config, stack)), serving
    )
    # A pooled model's gateway traffic goes through its HTTPRoute. With TLS its VirtualService stays on Istio's own
    # Gateway too, for a client that sends the model's host on an HTTP/2 connection it opened for another model (the
    # wildcard certificate lets it): that request reaches the `*.<domain>` server's routes, and is served there
    # without the picker rather than 404. Without TLS both Gateways' servers share one route table on port 80: the
    # model's host must be the HTTPRoute's alone there.
    through_gateway = config.security.allow_gateway and (
        not names.model.pooled or bool(config.gateway.tls_credential_name)
    )
    MeshRouting(f"route-{names.model.name}", names, config.routing, in_mesh, through_gateway)
if config.pooled_models():
    InferenceRouting("inference-routing", InferenceRoutingArgs.from_config(config), serving)
# Traces (the collector the mesh and the servers export to), the gateway's metrics, the dashboard, alerts and SLOs.
observability = Observability(
    "observability", ObservabilityArgs.from_config(config, stack, cluster_name(config, stack)), in_mesh
)

pulumi.export("environment", config.environment)
pulumi.export("clusterName", cluster.cluster_name)
pulumi.export("clusterEndpoint", cluster.endpoint)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("istioRevision", config.istio.revision)
scheme = "https" if config.gateway.tls_credential_name else "http"
# Each model's OpenAI base URL: through the gateway, or inside the mesh when the gateway may not call it.
pulumi.export(
    "inferenceEndpoints",
    {
        n.model.name: f"{scheme}://{n.external_host}/v1"
        if config.security.allow_gateway
        else f"http://{n.host}:{SERVER_PORT}/v1"
        for n in model_names(config)
    },
)
pulumi.export("modelBucket", store.bucket.name)
pulumi.export("dashboards", {"inference": observability.dashboard_url})
pulumi.export(
    "modelVersions",
    {
        names.model.name: {track: version_of(names.model, track).version for track in names.tracks}
        for names in model_names(config)
    },
)
