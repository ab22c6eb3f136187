"""Each invalid setting fails with one line: the key path as written, the value, and what is allowed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from llm_mesh.engine.stackfile import Project, read_stack_settings
from llm_mesh.plan.config import ConfigError, StackConfig, config_from_pulumi, parse_stack_config
from tests.helpers import served_model, version

DIGEST = "@sha256:" + "ab" * 32
BASE: dict[str, Any] = {
    "environment": "dev",
    "gcp": {"project": "llm-mesh-test"},
    "gpuPools": [{"name": "l4", "accelerator": "nvidia-l4", "machineType": "g2-standard-8"}],
    "models": [served_model(canary=version("v2"), canaryWeight=10)],
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """BASE with one key set (dotted path, list indexes as numbers); value None deletes the key."""
    config = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node: Any = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is None:
        del node[last]
    else:
        node[last] = value
    return config


def only_problem(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(config)
    assert len(caught.value.problems) == 1, caught.value.problems
    return caught.value.problems[0]


def test_base_is_valid() -> None:
    config = parse_stack_config(BASE)
    assert config.gpu_pools[0].gpu_count == 1
    assert config.models[0].canary_weight == 10


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "gpuPools.0.accelerator",
            "nvidia-t4",
            "llm-mesh:gpuPools[0].accelerator = 'nvidia-t4': Input should be 'nvidia-l4'",
        ),
        (
            "gpuPools.0.machineType",
            "n2-standard-8",
            "llm-mesh:gpuPools[0].machineType = 'n2-standard-8': nvidia-l4 needs a g2-standard-* machine type",
        ),
        (
            "gpuPools.0.gpusPerNode",
            4,
            "llm-mesh:gpuPools[0].gpusPerNode = 4: g2-standard-8 carries 1 × nvidia-l4; set gpusPerNode: 1",
        ),
        ("gpuPools.0.minNodes", 5, "llm-mesh:gpuPools[0].maxNodes = 2: maxNodes must be at least minNodes (5)"),
        ("models.0.canaryWeight", 120, "llm-mesh:models[0].canaryWeight = 120: must be between 0 and 100"),
        ("models.0.canaryWeight", -5, "llm-mesh:models[0].canaryWeight = -5: must be between 0 and 100"),
        ("models.0.stable", None, "llm-mesh:models[0].stable: required key is missing"),
        (
            "gpuPools.0.machineTyp",
            "g2-standard-8",
            "llm-mesh:gpuPools[0].machineTyp: unknown key; did you mean 'machineType'?",
        ),
        ("gpuPool", [], "llm-mesh:gpuPool: unknown key; did you mean 'gpuPools'?"),
        ("models.0.gpuPool", "h100", "llm-mesh:models[0].gpuPool = 'h100': names no GPU pool; use one of ['l4']"),
        (
            "gcp.zones",
            ["europe-west4-a"],
            "llm-mesh:gcp.zones = ['europe-west4-a']: zone 'europe-west4-a' is not in region 'us-central1'",
        ),
        (
            "gpuPools.0.migPartitionSize",
            "1g.10gb",
            "llm-mesh:gpuPools[0].migPartitionSize = '1g.10gb': nvidia-l4 has no MIG partitions",
        ),
        ("routing.timeout", "10 minutes", "llm-mesh:routing.timeout = '10 minutes': '10 minutes' is not a duration"),
        (
            "routing.retryOn",
            "5xx,sometimes",
            "llm-mesh:routing.retryOn = '5xx,sometimes': unknown retry condition(s) ['sometimes']",
        ),
        (
            "istio.previousVersion",
            "1.31.0",
            "llm-mesh:istio.previousVersion = '1.31.0': same revision as version '1.31.1'",
        ),
        (
            "models.0.stable.files",
            [{"path": "../etc/passwd"}],
            "llm-mesh:models[0].stable.files[0].path = '../etc/passwd': a file path must stay inside",
        ),
        (
            "models.0.mirror",
            {"version": version("v3"), "percentage": 150},
            "llm-mesh:models[0].mirror.percentage = 150",
        ),
        (
            "security.callers",
            ["*"],
            "llm-mesh:security.callers[0] = '*': a principal looks like 'cluster.local/ns/<namespace>/sa/<service-account>'",
        ),
    ],
)
def test_invalid_setting_names_key_value_and_fix(path: str, value: Any, expected: str) -> None:
    assert only_problem(with_change(path, value)).startswith(expected)


def test_canary_weight_without_canary_version() -> None:
    config = with_change("models.0.canary", None)
    assert only_problem(config).startswith(
        "llm-mesh:models[0].canaryWeight = 10: a canary weight needs a canary version"
    )


def test_unknown_key_lists_the_known_ones() -> None:
    problem = only_problem(with_change("cluster.regionl", False))
    assert "known keys: name, regional, releaseChannel" in problem


def test_prod_serves_https_only() -> None:
    prod = with_change("environment", "prod")
    assert only_problem(prod).startswith(
        "llm-mesh:gateway.tlsCredentialName = None: prod serves HTTPS only; name the gateway's TLS secret"
    )


def test_prod_images_must_be_pinned_by_digest() -> None:
    prod = with_change("environment", "prod")
    prod["gateway"] = {"tlsCredentialName": "llm-tls"}
    assert only_problem(prod).startswith(
        "llm-mesh:inference.image = 'vllm/vllm-openai:v0.27.1': prod images must be pinned by digest"
    )
    prod["inference"] = {"image": "vllm/vllm-openai" + DIGEST}
    prod["modelStore"] = {"serverImage": "nginxinc/nginx-unprivileged" + DIGEST}
    prod["models"][0]["canary"]["image"] = "vllm/vllm-openai:latest"
    assert only_problem(prod).startswith("llm-mesh:models[0].canary.image = 'vllm/vllm-openai:latest'")
    del prod["models"][0]["canary"]["image"]
    assert parse_stack_config(prod).environment == "prod"


def test_defaults_are_the_safe_ones() -> None:
    config = StackConfig.model_validate(
        {
            "gcp": {"project": "llm-mesh-test"},
            "inference": {"image": "a" + DIGEST},
            "modelStore": {"serverImage": "b" + DIGEST},
            "gateway": {"tlsCredentialName": "llm-tls"},
        }
    )
    assert config.environment == "prod"
    assert config.cluster.deletion_protection is True
    assert config.cluster.regional is True
    assert config.gpu_pools[0].driver_version == "LATEST"
    assert config.gpu_pools[0].spot is False
    assert config.routing.retry_on == "connect-failure,refused-stream"


def test_several_mistakes_are_all_reported() -> None:
    config = with_change("gpuPools.0.machineType", "n2-standard-8")
    config["models"][0]["canaryWeight"] = 101
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(config)
    assert len(caught.value.problems) == 2


def test_pulumi_config_bag_is_decoded() -> None:
    bag = {
        "llm-mesh:environment": "dev",
        "llm-mesh:gcp": '{"project": "llm-mesh-test"}',
        "gcp:project": "ignored-provider-setting",
    }
    assert config_from_pulumi(bag).gcp.project == "llm-mesh-test"


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_each_stack_file_is_valid(stack: str) -> None:
    project = Project.find(Path(__file__).parent)
    config = config_from_pulumi(read_stack_settings(project, stack).config)
    assert config.environment == stack


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"gpuPools": [{"name": "a"}, {"name": "a"}]},
            "llm-mesh:gpuPools[1].name = 'a': is used twice; names must be unique",
        ),
        (
            {"models": [served_model("m"), served_model("m")]},
            "llm-mesh:models[1].name = 'm': is used twice",
        ),
        (
            {"models": [served_model("m", gpusPerReplica=2)]},
            "llm-mesh:models[0].gpusPerReplica = 2: a g2-standard-8 node in pool 'l4' has 1 GPU(s)",
        ),
        (
            {"models": [served_model("m", stable=version("v1", source="s3://registry/m/v1"))]},
            "llm-mesh:models[0].stable.source = 's3://registry/m/v1': s3:// sources need modelStore.s3",
        ),
        ({"modelStore": {"s3": {}}}, "llm-mesh:modelStore.s3: AWS S3 needs roleArn or accessKeyId/secretAccessKey"),
        (
            {"modelStore": {"s3": {"endpoint": "https://minio.example.com"}}},
            "llm-mesh:modelStore.s3: an S3-compatible endpoint is reached through transfer agents",
        ),
        (
            {"gateway": {"minReplicas": 6, "maxReplicas": 3}},
            "llm-mesh:gateway.maxReplicas = 3: maxReplicas must be at least minReplicas (6)",
        ),
        (
            {"gpuPools": [{"name": "l4", "spot": True, "reservation": {"name": "r"}}]},
            "spot nodes cannot consume a reservation",
        ),
    ],
)
def test_cross_field_rules(changes: dict[str, Any], expected: str) -> None:
    base = {"environment": "dev", "gcp": {"project": "llm-mesh-test"}, "gpuPools": [{"name": "l4"}], **changes}
    assert expected in only_problem(base)


def test_secret_values_are_never_echoed() -> None:
    config = {
        "environment": "dev",
        "gcp": {"project": "llm-mesh-test"},
        "modelStore": {"s3": {"accessKeyId": "AKIA-SECRET-ID"}},
    }
    problem = only_problem(config)
    assert "AKIA-SECRET-ID" not in problem and problem.startswith(
        "llm-mesh:modelStore.s3: set both accessKeyId and secretAccessKey"
    )
    wrong_type = only_problem({**config, "modelStore": {"s3": {"accessKeyId": 12345, "secretAccessKey": "hunter2"}}})
    assert "12345" not in wrong_type and "hunter2" not in wrong_type


def test_nested_secure_values_make_the_key_secret(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: llm-mesh\nruntime: python\nstackConfigDir: stacks\n")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(
        "config:\n  llm-mesh:environment: dev\n  llm-mesh:modelStore:\n    s3:\n      accessKeyId:\n        secure: v1:abc\n"
        "      secretAccessKey:\n        secure: v1:def\n"
    )
    settings = read_stack_settings(Project.find(tmp_path), "dev")
    assert settings.secret_keys == ["llm-mesh:modelStore"]
    assert json.loads(settings.config["llm-mesh:modelStore"]) == {
        "s3": {"accessKeyId": "[secret]", "secretAccessKey": "[secret]"}
    }
    assert "v1:abc" not in settings.config["llm-mesh:modelStore"]
