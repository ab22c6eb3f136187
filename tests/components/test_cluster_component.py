"""GpuCluster under the mock runtime, in process, for pool shapes the stacks do not use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.cluster import GpuCluster, GpuClusterArgs
from components.istio import IstioMesh, IstioMeshArgs
from llm_mesh.engine.document import preview_document
from llm_mesh.engine.run import RecordingMonitor, record, run_main
from llm_mesh.engine.stackfile import Project, StackSettings, read_stack_settings
from llm_mesh.plan.authz import security_objects
from llm_mesh.plan.config import ConfigError, StackConfig, parse_stack_config
from llm_mesh.plan.gcp_names import service_account_id
from tests.helpers import prop, resource, served_model

NODE_POOL = "gcp:container/nodePool:NodePool"
RELEASE = "kubernetes:helm.sh/v3:Release"


def stack_config(**changes: Any) -> StackConfig:
    return parse_stack_config(
        {
            "environment": "dev",
            "gcp": {"project": "llm-mesh-test", "zones": ["us-central1-a"]},
            "models": [served_model()],
            **changes,
        }
    )


# A model small enough for a 1g.10gb MIG slice or a quarter of a time-shared L4 (a stack serves at least one model, and
# every pool must carry one).
SMALL: dict[str, Any] = {
    "shape": {
        "parametersBillions": 0.5,
        "layers": 24,
        "attentionHeads": 14,
        "kvHeads": 2,
        "headDim": 64,
        "nativeContext": 32768,
    },
    "contextLength": 4096,
}


def preview_of(config: StackConfig) -> dict[str, Any]:
    def program() -> None:
        GpuCluster("gpu", GpuClusterArgs.from_config(config, "test"))

    return preview_document(record(program, "llm-mesh", "test", StackSettings({})))


@pytest.mark.usefixtures("fresh_loop")
def test_reservation_sharing_and_mig_reach_the_node_pool() -> None:
    config = stack_config(
        gpuPools=[
            {
                "name": "a100",
                "accelerator": "nvidia-a100-80gb",
                "machineType": "a2-ultragpu-8g",
                "reservation": {"name": "team-a100"},
                "migPartitionSize": "1g.10gb",
                "driverVersion": "DEFAULT",
            },
            {
                "name": "l4-shared",
                "machineType": "g2-standard-8",
                "sharing": {"strategy": "TIME_SHARING", "maxSharedClientsPerGpu": 4},
            },
        ],
        models=[
            served_model("small-a100", **SMALL, gpuPool="a100"),
            served_model("small-l4", **SMALL, gpuPool="l4-shared"),
        ],
    )
    document = preview_of(config)
    a100 = resource(document, NODE_POOL, "gpu-a100")
    assert prop(a100, "nodeConfig.reservationAffinity") == {
        "consumeReservationType": "SPECIFIC_RESERVATION",
        "key": "compute.googleapis.com/reservation-name",
        "values": ["team-a100"],
    }
    assert prop(a100, "nodeConfig.guestAccelerators.0.count") == 8
    assert prop(a100, "nodeConfig.guestAccelerators.0.gpuPartitionSize") == "1g.10gb"
    assert prop(a100, "nodeConfig.guestAccelerators.0.gpuDriverInstallationConfig.gpuDriverVersion") == "DEFAULT"
    assert prop(a100, "nodeConfig.spot") is False
    shared = resource(document, NODE_POOL, "gpu-l4-shared")
    assert prop(shared, "nodeConfig.guestAccelerators.0.gpuSharingConfig") == {
        "gpuSharingStrategy": "TIME_SHARING",
        "maxSharedClientsPerGpu": 4,
    }
    assert "reservationAffinity" not in shared["inputs"]["nodeConfig"]


@pytest.mark.usefixtures("fresh_loop")
def test_node_service_account_has_only_the_node_roles() -> None:
    document = preview_of(stack_config())
    roles = sorted(
        s["newState"]["inputs"]["role"] for s in document["steps"] if s["newState"]["type"].endswith(":IAMMember")
    )
    assert roles == sorted(
        [
            "roles/artifactregistry.reader",
            "roles/logging.logWriter",
            "roles/monitoring.metricWriter",
            "roles/monitoring.viewer",
            "roles/stackdriver.resourceMetadata.writer",
        ]
    )
    account = resource(document, "gcp:serviceaccount/account:Account", "gpu-nodes")
    assert account["inputs"]["accountId"] == service_account_id("llm-mesh-test", "nodes")
    system = resource(document, NODE_POOL, "gpu-system")
    assert "guestAccelerators" not in system["inputs"]["nodeConfig"]


@pytest.mark.usefixtures("fresh_loop")
def test_config_error_declares_no_resource() -> None:
    """The real program, a broken stack config: the error comes before any resource but the stack."""
    project = Project.find(Path(__file__).parent)
    good = read_stack_settings(project, "dev")
    config = {**good.config, "llm-mesh:gpuPools": '[{"name": "l4", "machineType": "n2-standard-8"}]'}
    monitor = RecordingMonitor()
    with pytest.raises(ConfigError, match=r"gpuPools\[0\]\.machineType = 'n2-standard-8'"):
        record(
            lambda: run_main(project.root),
            "llm-mesh",
            "dev",
            StackSettings(config),
            monitor,
        )
    assert [r.type for r in monitor.registrations] == ["pulumi:pulumi:Stack"]


@pytest.mark.usefixtures("fresh_loop")
def test_side_by_side_upgrade_keeps_the_previous_istiod() -> None:
    config = stack_config(istio={"version": "1.31.1", "previousVersion": "1.30.5"})

    def program() -> None:
        IstioMesh("istio", IstioMeshArgs.from_config(config))

    document = preview_document(record(program, "llm-mesh", "test", StackSettings({})))
    releases = {
        s["newState"]["inputs"]["name"]: s["newState"]["inputs"]
        for s in document["steps"]
        if s["newState"]["type"] == RELEASE
    }
    assert releases["istiod-1-31"]["version"] == "1.31.1"
    assert releases["istiod-1-30"]["version"] == "1.30.5"
    assert releases["istiod-1-30"]["values"]["revision"] == "1-30"
    assert releases["istio-base"]["values"]["defaultRevision"] == "1-31", "new workloads go to the new control plane"
    namespace = resource(document, "kubernetes:core/v1:Namespace", "istio-ns-inference")
    assert prop(namespace, "metadata.labels")["istio.io/rev"] == "1-31"


def test_jwt_at_the_gateway_refuses_requests_without_a_token() -> None:
    config = stack_config(
        security={"jwt": {"issuer": "https://issuer.example.com", "jwksUri": "https://issuer.example.com/jwks"}},
    )
    manifests = {obj.key: obj.manifest() for obj in security_objects(config)}
    request_auth = manifests["RequestAuthentication/istio-ingress/gateway-jwt"]["spec"]
    assert request_auth["selector"] == {"matchLabels": {"istio": "ingressgateway"}}
    # The gateway passes the token on, so that the model's own proxy can check the end user again.
    assert request_auth["jwtRules"] == [
        {
            "issuer": "https://issuer.example.com",
            "jwksUri": "https://issuer.example.com/jwks",
            "forwardOriginalToken": True,
        }
    ]
    deny = manifests["AuthorizationPolicy/istio-ingress/gateway-require-jwt"]["spec"]
    assert deny["action"] == "DENY"
    assert deny["rules"] == [{"from": [{"source": {"notRequestPrincipals": ["*"]}}]}]
    at_model = manifests["RequestAuthentication/inference/llama-jwt"]["spec"]
    assert at_model["selector"] == {
        "matchLabels": {"app.kubernetes.io/name": "llama", "app.kubernetes.io/part-of": "llm-mesh"}
    }
    assert at_model["jwtRules"] == [
        {"issuer": "https://issuer.example.com", "jwksUri": "https://issuer.example.com/jwks"}
    ]
    callers = manifests["AuthorizationPolicy/inference/llama-callers"]["spec"]
    gateway_with_token = {
        "source": {
            "principals": ["cluster.local/ns/istio-ingress/sa/istio-ingressgateway"],
            "requestPrincipals": ["https://issuer.example.com/*"],
        }
    }
    assert [rule["from"] for rule in callers["rules"]] == [[gateway_with_token]] * 2
    assert not any(key.endswith("-jwt") for key in (o.key for o in security_objects(stack_config())))


def test_configured_callers_add_to_the_gateway() -> None:
    config = stack_config(
        security={"callers": ["cluster.local/ns/default/sa/api-gateway"]},
    )
    policy = next(o for o in security_objects(config) if o.key == "AuthorizationPolicy/inference/llama-callers")
    sources = [r["from"][0]["source"]["principals"] for r in policy.manifest()["spec"]["rules"]]
    both = ["cluster.local/ns/istio-ingress/sa/istio-ingressgateway", "cluster.local/ns/default/sa/api-gateway"]
    assert sources == [both] * 2


@pytest.mark.usefixtures("fresh_loop")
def test_helm_values_from_config_merge_over_the_defaults() -> None:
    config = stack_config(
        istio={"values": {"istiod": {"pilot": {"autoscaleMin": 3, "resources": {"requests": {"cpu": "1"}}}}}}
    )

    def program() -> None:
        IstioMesh("istio", IstioMeshArgs.from_config(config))

    document = preview_document(record(program, "llm-mesh", "test", StackSettings({})))
    istiod = next(
        s["newState"]["inputs"]
        for s in document["steps"]
        if s["newState"]["type"] == RELEASE and s["newState"]["inputs"]["chart"] == "istiod"
    )
    pilot = istiod["values"]["pilot"]
    assert pilot["autoscaleMin"] == 3 and pilot["resources"] == {"requests": {"cpu": "1"}}
    assert pilot["cni"] == {"enabled": True}, "keys the override does not name keep llm-mesh's values"


def test_models_served_inside_the_mesh_only_take_no_gateway_traffic() -> None:
    from llm_mesh.plan.routing import virtual_service
    from llm_mesh.plan.topology import model_names

    caller = "cluster.local/ns/apps/sa/chat"
    config = stack_config(security={"callers": [caller], "allowGateway": False})
    policy = next(o for o in security_objects(config) if o.key == "AuthorizationPolicy/inference/llama-callers")
    assert [r["from"] for r in policy.manifest()["spec"]["rules"]] == [[{"source": {"principals": [caller]}}]] * 2
    spec = virtual_service(model_names(config)[0], config.routing, through_gateway=False).manifest()["spec"]
    assert spec["gateways"] == ["mesh"] and spec["hosts"] == ["llama.inference.svc.cluster.local"]
    with pytest.raises(ConfigError) as caught:
        stack_config(security={"allowGateway": False})
    assert caught.value.problems == [
        "llm-mesh:security.allowGateway = False: with the gateway not allowed and no security.callers, nothing "
        "could call the models; name the in-mesh callers, or allow the gateway"
    ]


def provider_kubeconfig(config: StackConfig) -> dict[str, Any]:
    """The kubeconfig the Kubernetes provider is given, as the SDK registers it (a secret, unwrapped here)."""
    monitor = RecordingMonitor()

    def program() -> None:
        GpuCluster("gpu", GpuClusterArgs.from_config(config, "test"))

    record(
        program,
        "llm-mesh",
        "test",
        StackSettings({}),
        monitor,
    )
    [provider] = [r for r in monitor.registrations if r.type == "pulumi:providers:kubernetes"]
    assert provider.inputs["clusterIdentifier"] == "projects/llm-mesh-test/locations/us-central1/clusters/llm-mesh-test"
    kubeconfig: dict[str, Any] = json.loads(provider.inputs["kubeconfig"]["value"])
    return kubeconfig


@pytest.mark.usefixtures("fresh_loop")
def test_the_kubeconfig_reaches_the_api_server_through_the_dns_endpoint() -> None:
    """A runner with no fixed address reaches the cluster by name, admitted by IAM; no CA is pinned, as gcloud
    writes it for the DNS endpoint (Google's certificate is publicly trusted)."""
    kubeconfig = provider_kubeconfig(stack_config())
    [cluster] = kubeconfig["clusters"]
    assert cluster["cluster"] == {
        "server": "https://__computed__(gpu-gke.controlPlaneEndpointsConfig.dnsEndpointConfig.endpoint)__"
    }
    assert kubeconfig["users"][0]["user"]["exec"]["command"] == "gke-gcloud-auth-plugin"


@pytest.mark.usefixtures("fresh_loop")
def test_without_the_dns_endpoint_the_kubeconfig_uses_the_ip_endpoint_and_its_ca() -> None:
    kubeconfig = provider_kubeconfig(stack_config(cluster={"dnsEndpoint": False}))
    assert kubeconfig["clusters"][0]["cluster"] == {
        "server": "https://__computed__(gpu-gke.endpoint)__",
        "certificate-authority-data": "__computed__(gpu-gke.masterAuth.clusterCaCertificate)__",
    }
