"""The policy pack served as the Pulumi CLI serves it: `python -u -m pulumi.policy ENGINE_ADDR .` in policies/,
called over gRPC in the CLI's order with what the engine sends (Struct properties: numbers as doubles, unknowns
as the engine's sentinel string). One pack process for the module.
"""

from __future__ import annotations

import copy
import os
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from google.protobuf import empty_pb2, struct_pb2
from llm_mesh_policies import PACK_NAME, POLICIES
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, engine_pb2_grpc
from pulumi_policy import StackValidationPolicy

from llm_mesh.engine.readers import EngineResource
from tests.policies.builders import (
    ALLOW_NOTHING,
    BUCKET,
    EXPOSED,
    EXTERNAL,
    GATEWAY,
    GPU_CONTAINER,
    GPU_TOLERATION,
    HARDENED,
    ISTIOD,
    LB_TYPE,
    MESH_WIDE,
    PACK,
    UNKNOWN,
    anonymous,
    deployment,
    dr,
    gateway_release,
    gcp,
    namespace,
)

TIMEOUT = 30
# The only rule lowered by Configure: its diagnostics must carry the level the CLI configured.
ADVISORY_RULE = "prod-images-pinned-by-digest"


class Engine(engine_pb2_grpc.EngineServicer):
    """The part of pulumirpc.Engine a policy pack may call: Log."""

    def __init__(self) -> None:
        self.logs: list[tuple[int, str, str]] = []

    def Log(self, request: Any, context: Any) -> empty_pb2.Empty:
        self.logs.append((request.severity, request.message, request.urn))
        return empty_pb2.Empty()


@dataclass
class Pack:
    analyzer: analyzer_pb2_grpc.AnalyzerStub
    engine: Engine
    engine_address: str
    stderr: Path
    handshake: grpc.StatusCode = grpc.StatusCode.OK
    info: Any = None


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pack]:
    engine = Engine()
    engine_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    engine_pb2_grpc.add_EngineServicer_to_server(engine, engine_server)
    engine_address = f"127.0.0.1:{engine_server.add_insecure_port('127.0.0.1:0')}"
    engine_server.start()
    stderr = tmp_path_factory.mktemp("pack") / "stderr.txt"
    # What NewPolicyAnalyzer puts in the analyzer's environment; nothing of this test's own Pulumi settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env |= {"PULUMI_PROJECT": "llm-mesh", "PULUMI_STACK": "prod", "PULUMI_DRY_RUN": "true", "PULUMI_CONFIG": "{}"}
    with stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.policy", engine_address, "."],
            cwd=PACK,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    channel = None
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], TIMEOUT)
        assert ready, f"no port on stdout after {TIMEOUT} s: {stderr.read_text()}"
        port = int(process.stdout.readline().strip() or 0)
        assert port, f"the pack exited: {stderr.read_text()}"
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        yield Pack(analyzer_pb2_grpc.AnalyzerStub(channel), engine, engine_address, stderr)
    finally:
        if channel is not None:
            channel.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        engine_server.stop(grace=None)


@pytest.fixture(scope="module")
def configured(pack: Pack) -> Pack:
    """Handshake, ConfigureStack, GetAnalyzerInfo and Configure, in the order NewPolicyAnalyzer and the engine call
    them."""
    try:
        pack.analyzer.Handshake(
            analyzer_pb2.AnalyzerHandshakeRequest(
                engine_address=pack.engine_address, root_directory=str(PACK), program_directory=str(PACK)
            ),
            timeout=TIMEOUT,
        )
    except grpc.RpcError as error:
        pack.handshake = error.code()
    pack.analyzer.ConfigureStack(
        analyzer_pb2.AnalyzerStackConfigureRequest(stack="prod", project="llm-mesh", dry_run=True), timeout=TIMEOUT
    )
    pack.info = pack.analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=TIMEOUT)
    levels = {p.name: analyzer_pb2.ADVISORY if p.name == ADVISORY_RULE else analyzer_pb2.MANDATORY for p in POLICIES}
    pack.analyzer.Configure(
        analyzer_pb2.ConfigureAnalyzerRequest(
            policyConfig={name: analyzer_pb2.PolicyConfig(enforcementLevel=level) for name, level in levels.items()}
        ),
        timeout=TIMEOUT,
    )
    return pack


# --- what the engine sends


def struct(inputs: dict[str, Any]) -> struct_pb2.Struct:
    """Properties on the wire: a Struct, in which every number is a double."""
    wire = struct_pb2.Struct()
    wire.update(inputs)
    return wire


def options(resource: EngineResource) -> analyzer_pb2.AnalyzerResourceOptions:
    return analyzer_pb2.AnalyzerResourceOptions(protect=resource.protect, parent=resource.parent)


Diagnostic = tuple[str, str, str, str]  # policy, urn, enforcement level, message


def diagnostics(response: Any) -> list[Diagnostic]:
    """Each diagnostic with the rule's own message (the analyzer puts the rule's description before it)."""
    found = []
    for d in response.diagnostics:
        assert (d.policyPackName, d.policyPackVersion) == (PACK_NAME, "0.0.1")
        level = analyzer_pb2.EnforcementLevel.Name(d.enforcementLevel)
        found.append((d.policyName, d.urn, level, d.message.removeprefix(f"{d.description}\n")))
    return found


def analyze(pack: Pack, resources: list[EngineResource]) -> list[Diagnostic]:
    """`Analyze` on each resource's inputs, then `AnalyzeStack` once on all of them, as a preview does."""
    found: list[Diagnostic] = []
    for r in resources:
        request = analyzer_pb2.AnalyzeRequest(
            type=r.type, properties=struct(r.inputs), urn=r.urn, name=r.name, options=options(r)
        )
        found += diagnostics(pack.analyzer.Analyze(request, timeout=TIMEOUT))
    stack = [
        analyzer_pb2.AnalyzerResource(
            type=r.type, properties=struct(r.inputs), urn=r.urn, name=r.name, options=options(r), parent=r.parent
        )
        for r in resources
    ]
    request = analyzer_pb2.AnalyzeStackRequest(resources=stack)
    return sorted(found + diagnostics(pack.analyzer.AnalyzeStack(request, timeout=TIMEOUT)))


# --- a prod stack that complies, with a GPU request written as a number and its limit as text

STACK_URN = "urn:pulumi:prod::llm-mesh::pulumi:pulumi:Stack::llm-mesh-prod"
INFERENCE = namespace("inference", {"istio.io/rev": "1-31"})
SERVER = deployment(
    "inference",
    {**GPU_CONTAINER, "resources": {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": "1"}}},
    tolerations=GPU_TOLERATION,
)
INTERNAL_GATEWAY = gateway_release({"type": "LoadBalancer", "annotations": {LB_TYPE: "Internal"}})
COMPLIANT = [
    EngineResource(urn=STACK_URN, type="pulumi:pulumi:Stack", custom=False, inputs={}),
    gcp("gcp:container/cluster:Cluster", "gpu-gke", HARDENED, protect=True),
    gcp(
        "gcp:container/nodePool:NodePool",
        "gpu-l4",
        {
            "initialNodeCount": 1,
            "nodeConfig": {
                "shieldedInstanceConfig": {"enableSecureBoot": True},
                "workloadMetadataConfig": {"mode": "GKE_METADATA"},
                "guestAccelerators": [{"type": "nvidia-l4", "count": 1}],
                "kubeletConfig": {"insecureKubeletReadonlyPortEnabled": "FALSE"},
            },
        },
    ),
    gcp("gcp:storage/bucket:Bucket", "models-bucket", BUCKET, protect=True),
    ISTIOD,
    INTERNAL_GATEWAY,
    namespace("istio-ingress", {"istio.io/rev": "1-31"}),
    INFERENCE,
    MESH_WIDE,
    ALLOW_NOTHING,
    SERVER,
    dr("llama-31-8b.inference.svc.cluster.local", trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}}),
    *EXPOSED,
]


def with_inputs(resource: EngineResource, change: Callable[[dict[str, Any]], None], urn: str = "") -> EngineResource:
    inputs = copy.deepcopy(resource.inputs)
    change(inputs)
    return EngineResource(**{**resource.__dict__, "inputs": inputs, "urn": urn or resource.urn})


def unpinned_and_mismatched(inputs: dict[str, Any]) -> None:
    container = inputs["spec"]["template"]["spec"]["containers"][0]
    container["image"] = "vllm/vllm-openai:v0.10.0"
    container["resources"] = {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": "2"}}


def computed_namespace(inputs: dict[str, Any]) -> None:
    inputs["metadata"]["namespace"] = UNKNOWN


def unlabelled(inputs: dict[str, Any]) -> None:
    inputs["metadata"]["labels"] = {}


def test_analyzer_info_lists_every_rule_with_its_level(configured: Pack) -> None:
    assert configured.handshake == grpc.StatusCode.UNIMPLEMENTED  # pulumi_policy 1.21 has no Handshake: fine
    info = configured.info
    # pulumi_policy answers 0.0.1; the CLI shows and publishes PulumiPolicy.yaml's version instead.
    assert (info.name, info.version, info.supportsConfig) == (PACK_NAME, "0.0.1", True)
    assert [
        (p.name, analyzer_pb2.EnforcementLevel.Name(p.enforcementLevel), analyzer_pb2.PolicyType.Name(p.policy_type))
        for p in info.policies
    ] == [
        (
            p.name,
            "MANDATORY",
            "POLICY_TYPE_STACK" if isinstance(p, StackValidationPolicy) else "POLICY_TYPE_RESOURCE",
        )
        for p in POLICIES
    ]


def test_compliant_stack_has_no_diagnostics(configured: Pack) -> None:
    assert analyze(configured, COMPLIANT) == []


def test_violations_are_reported_on_the_resource_to_change(configured: Pack) -> None:
    """Defect 1 (number vs text) and 3 (an unknown namespace) among real violations; injection on the Namespace."""
    computed = with_inputs(SERVER, computed_namespace, urn=SERVER.urn + "-computed")
    changed = {
        SERVER.urn: with_inputs(SERVER, unpinned_and_mismatched),
        INFERENCE.urn: with_inputs(INFERENCE, unlabelled),
        INTERNAL_GATEWAY.urn: gateway_release(),
    }
    resources = [changed.get(r.urn, r) for r in COMPLIANT if r.urn != ALLOW_NOTHING.urn] + [computed]
    assert analyze(configured, resources) == sorted(
        [
            (
                "gpu-workload-limits",
                SERVER.urn,
                "MANDATORY",
                "container server: nvidia.com/gpu request 1 differs from its limit 2",
            ),
            (
                ADVISORY_RULE,
                SERVER.urn,
                "ADVISORY",
                "container server runs 'vllm/vllm-openai:v0.10.0', not pinned by digest",
            ),
            (
                "istio-namespace-allow-nothing",
                SERVER.urn,
                "MANDATORY",
                "namespace inference runs workloads but has no allow-nothing AuthorizationPolicy",
            ),
            (
                "istio-namespace-injection",
                INFERENCE.urn,
                "MANDATORY",
                "namespace inference runs workloads without sidecar injection or ambient mode: "
                "add the label istio.io/rev=1-31",
            ),
            ("prod-inference-not-anonymous", GATEWAY.urn, "MANDATORY", anonymous(EXTERNAL)),
            # The gateway's load balancer made public: open to any address, and its status port published.
            (
                "prod-public-gateway-fronted",
                INTERNAL_GATEWAY.urn,
                "MANDATORY",
                "the gateway's public load balancer admits any address: no values.service.loadBalancerSourceRanges",
            ),
            (
                "prod-public-gateway-fronted",
                INTERNAL_GATEWAY.urn,
                "MANDATORY",
                "the gateway's public load balancer publishes Envoy's status port 15021 (the chart's default "
                "service.ports)",
            ),
        ]
    )
    # The workload whose namespace is unknown is left out of the two rules that read it, and the CLI is told so
    # on the analyzer's stderr (pulumi.policy never connects pulumi.log to the engine address it is given).
    why = "string value at .metadata.namespace can't be known during preview"
    warnings = [line for line in configured.stderr.read_text().splitlines() if line.startswith("warning: ")]
    assert warnings == [
        f"warning: policy istio-namespace-allow-nothing not evaluated on {computed.urn}: {why}",
        f"warning: policy istio-namespace-injection not evaluated on {computed.urn}: {why}",
    ]
    assert configured.engine.logs == []


def test_the_offline_runner_and_the_served_pack_agree_on_the_same_inputs(
    configured: Pack, previews: dict[str, Any]
) -> None:
    """`llm-mesh policy` runs the rules in this process; the CLI serves them over gRPC. On the same resources (a
    stack with violations, and each stack's own preview) both find the same violations on the same resources."""
    from llm_mesh.checks.policy_runner import run_policies
    from llm_mesh.engine.readers import read_document

    violating = [
        {
            SERVER.urn: with_inputs(SERVER, unpinned_and_mismatched),
            INFERENCE.urn: with_inputs(INFERENCE, unlabelled),
        }.get(r.urn, r)
        for r in COMPLIANT
        if r.urn != ALLOW_NOTHING.urn
    ]
    sets = {"violating": violating, **{stack: read_document(document) for stack, document in previews.items()}}
    for label, resources in sets.items():
        served = {(policy, urn, message) for policy, urn, _, message in analyze(configured, resources)}
        report = run_policies(POLICIES, resources)
        offline = {(v.policy, v.urn, v.message) for v in report.violations}
        assert served == offline, label
        assert served or label != "violating", "the violating set violates"


def test_the_served_pack_reads_the_inference_pool_path_as_the_offline_runner_does(
    configured: Pack, pooled_previews: dict[str, Any]
) -> None:
    """The pool path's objects reach the served pack as custom resources (`kubernetes:<apiVersion>:<kind>`): the
    switched plans pass its two rules, and the same plan out of the mesh, with a picker given Secrets, trips both."""
    from llm_mesh.checks.policy_runner import run_policies
    from llm_mesh.engine.readers import read_document

    broken = read_document(copy.deepcopy(pooled_previews["staging"]))
    for r in broken:
        if r.type == "kubernetes:core/v1:Namespace" and r.inputs["metadata"]["name"] == "inference":
            r.inputs["metadata"]["labels"] = {"istio-injection": "disabled"}
        if r.type.endswith("v1:RoleBinding") and r.inputs["metadata"]["name"] == "llama-31-8b-stable-epp":
            r.inputs["roleRef"] = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}
    sets = {"broken": broken, **{stack: read_document(document) for stack, document in pooled_previews.items()}}
    rules = {"inference-pool-in-mesh", "endpoint-picker-no-secrets"}
    for label, resources in sets.items():
        served = {(policy, urn, message) for policy, urn, _, message in analyze(configured, resources)}
        offline = {(v.policy, v.urn, v.message) for v in run_policies(POLICIES, resources).violations}
        assert served == offline, label
        tripped = {policy for policy, _, _ in served} & rules
        assert tripped == (rules if label == "broken" else set()), label
