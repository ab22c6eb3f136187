"""The prod plan as GKE, Istio and vLLM would run it: the facts that decide whether it serves, read from the preview."""

from __future__ import annotations

import json
from typing import Any

from tests.helpers import prop, resource

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
JOB = "kubernetes:batch/v1:Job"
RELEASE = "kubernetes:helm.sh/v3:Release"
CLASS = "kubernetes:cloud.google.com/v1:ComputeClass"


def stable(previews: dict[str, Any]) -> dict[str, Any]:
    return resource(previews["prod"], DEPLOYMENT, "model-llama-31-8b-stable")


def test_vllm_serve_gets_the_model_positionally_and_the_decided_fit(previews: dict[str, Any]) -> None:
    server = prop(stable(previews), "spec.template.spec.containers.0")
    assert server["args"] == [
        "/models/v1",
        "--served-model-name",
        "meta-llama/Llama-3.1-8B-Instruct",
        "--port",
        "8000",
        "--tensor-parallel-size",
        "1",
        "--max-model-len",
        "8192",
        "--gpu-memory-utilization",
        "0.9",
        "--otlp-traces-endpoint",
        "grpc://opentelemetry-collector.observability.svc.cluster.local:4317",
    ]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_a_server_drains_longer_than_the_longest_request(previews: dict[str, Any]) -> None:
    pod = prop(stable(previews), "spec.template.spec")
    assert pod["terminationGracePeriodSeconds"] == 10 + 600 + 20
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[:2] == ["python3", "-c"] and pre_stop[3:] == ["8000", "10", "600"]


def test_the_gateway_drains_as_long_as_the_servers(previews: dict[str, Any]) -> None:
    values = prop(resource(previews["prod"], RELEASE, "istio-istio-ingressgateway"), "values")
    assert values["terminationGracePeriodSeconds"] == 630
    proxy = json.loads(values["podAnnotations"]["proxy.istio.io/config"])
    assert proxy == {"proxyMetadata": {"EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "true"}, "terminationDrainDuration": "630s"}
    assert values["autoscaling"]["autoscaleBehavior"] == {"scaleDown": {"stabilizationWindowSeconds": 600}}
    # The autoscaler's 10-minute eviction limit is shorter than that drain: it leaves a gateway pod's node alone.
    assert values["podAnnotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    assert {c["topologyKey"]: c["labelSelector"] for c in values["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname": {"matchLabels": values["labels"]},
        "topology.kubernetes.io/zone": {"matchLabels": values["labels"]},
    }


def test_servers_wait_for_their_weights_gate(previews: dict[str, Any]) -> None:
    document = previews["prod"]
    for track, version in (("stable", "v1"), ("canary", "v2"), ("mirror", "v3-rc1")):
        gate = resource(document, JOB, f"model-llama-31-8b-{track}-weights")
        assert prop(gate, "metadata.name") == f"llama-31-8b-{track}-weights-{version}"
        assert prop(gate, "metadata.annotations")["pulumi.com/replaceUnready"] == "true"
        deployment = resource(document, DEPLOYMENT, f"model-llama-31-8b-{track}")
        gate_urn = next(s["urn"] for s in document["steps"] if s["newState"] is gate)
        assert gate_urn in deployment["dependencies"]


def test_overflow_to_spot_goes_through_a_compute_class(previews: dict[str, Any]) -> None:
    compute_class = resource(previews["prod"], CLASS, "gpu-class-l4-ondemand-then-l4-spot")
    spec = prop(compute_class, "spec")
    assert len(spec["priorities"]) == 2 and spec["nodePoolAutoCreation"] == {"enabled": False}
    pod = prop(stable(previews), "spec.template.spec")
    assert pod["nodeSelector"]["cloud.google.com/compute-class"] == "l4-ondemand-then-l4-spot"
    assert {
        "key": "cloud.google.com/compute-class",
        "operator": "Equal",
        "value": "l4-ondemand-then-l4-spot",
        "effect": "NoSchedule",
    } in pod["tolerations"]
    required = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["l4-ondemand", "l4-spot"]


def test_servers_start_after_the_store_and_the_metrics_adapter(previews: dict[str, Any]) -> None:
    document = previews["prod"]
    service = next(s for s in document["steps"] if s["urn"].endswith("InferenceService::model-llama-31-8b"))
    dependencies = service["newState"]["dependencies"]
    # The SDK records a dependency on a component as one on each of its children.
    for child in (
        "llm-mesh:storage:ModelStore$kubernetes:apps/v1:Deployment::models-server",
        "llm-mesh:storage:ModelStore$gcp:storage/transferJob:TransferJob::models-import-llama-31-8b-v1",
        "llm-mesh:autoscaling:MetricsAdapter$kubernetes:apps/v1:Deployment::metrics-adapter-server",
        "llm-mesh:autoscaling:MetricsAdapter$kubernetes:apiregistration.k8s.io/v1:APIService::metrics-adapter-v1beta1-external",
    ):
        assert f"urn:pulumi:prod::llm-mesh::{child}" in dependencies
