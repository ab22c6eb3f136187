"""Each invalid setting fails with one line: the key path as written, the value, and what is allowed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm_mesh.engine.stackfile import Project, read_stack_settings
from llm_mesh.plan.config import ConfigError, StackConfig, config_from_pulumi, parse_stack_config
from tests.config.builders import BASE, only_problem, problems_of, with_change
from tests.helpers import PUSHED_FILES, served_model, version

DIGEST = "@sha256:" + "ab" * 32


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
            "llm-mesh:gcp.zones = ['europe-west4-a']: zone 'europe-west4-a' is not in region 'us-central1'; use "
            "us-central1-a, us-central1-b, us-central1-c or us-central1-f",
        ),
        (
            "gcp.zones",
            ["us-central1-d"],
            "llm-mesh:gcp.zones = ['us-central1-d']: zone 'us-central1-d' is not a zone of us-central1; use "
            "us-central1-a, us-central1-b, us-central1-c or us-central1-f",
        ),
        (
            "gcp.region",
            "europe-west99",
            "llm-mesh:gcp.region = 'europe-west99': not a GCP region GKE runs in; did you mean 'europe-west9'? "
            "(`gcloud compute regions list` shows them; one opened since goes in llm_mesh/plan/gcp_regions.json)",
        ),
        (
            "gcp.region",
            "europe-west",
            "llm-mesh:gcp.region = 'europe-west': not a GCP region GKE runs in; did you mean 'europe-west1', "
            "'europe-west2' or 'europe-west3'?",
        ),
        ("gcp.region", "mars-north1", "llm-mesh:gcp.region = 'mars-north1': not a GCP region GKE runs in (`gcloud"),
        (
            "gcp.region",
            "us-central1-a",
            "llm-mesh:gcp.region = 'us-central1-a': a zone, not a region: set region: us-central1 (zones go in "
            "gcp.zones)",
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


def test_zones_are_judged_once_their_region_is_right() -> None:
    """A refused region is the one mistake: its zones are not also reported against the default region."""
    config = with_change("gcp.region", "europe-west99")
    config["gcp"]["zones"] = ["europe-west99-a"]
    assert only_problem(config).startswith("llm-mesh:gcp.region = 'europe-west99': not a GCP region")
    assert parse_stack_config(
        with_change("gcp", {"project": "llm-mesh-test", "region": "europe-west1", "zones": ["europe-west1-b"]})
    ).gcp.zones == ["europe-west1-b"]


def test_canary_weight_without_canary_version() -> None:
    config = with_change("models.0.canary", None)
    assert only_problem(config).startswith(
        "llm-mesh:models[0].canaryWeight = 10: a canary weight needs a canary version"
    )


def test_unknown_key_lists_the_known_ones() -> None:
    problem = only_problem(with_change("cluster.regionl", False))
    assert "known keys: name, regional, releaseChannel" in problem


PINNED = "prod images must be pinned by digest: 'repo@sha256:<64 hex>'"
NOBODY_TOLD = (
    "llm-mesh:observability.alerts.notificationChannels = []: prod alerts would notify nobody; name a channel "
    "(projects/PROJECT/notificationChannels/ID) or set observability.alerts.emails, for which the stack declares "
    "email channels"
)
TOLD = {"alerts": {"emails": ["oncall@example.com"]}}


def prod_copy() -> dict[str, Any]:
    """BASE switched to prod, its versions' files recorded with size and sha256 as prod requires."""
    prod = with_change("environment", "prod")
    for track in ("stable", "canary"):
        prod["models"][0][track]["files"] = PUSHED_FILES
    return prod


# What else prod requires of BASE.
HARDENED = {
    "gateway": {"tlsCredentialName": "llm-tls"},
    "inference": {"image": "vllm/vllm-openai" + DIGEST},
    "modelStore": {"serverImage": "nginxinc/nginx-unprivileged" + DIGEST},
    "observability": TOLD,
}


def unchecked(key: str, entry: dict[str, Any], missing: str, version: str) -> str:
    return (
        f"llm-mesh:{key} = {entry!r}: prod serves only files it can check (sha256 at every fetch, size in `llm-mesh "
        f"models verify`); this one has no {missing}: record both with `llm-mesh models push --stack STACK --model "
        f"llama --version {version} DIR` (DIR: the version's folder)"
    )


def test_prod_serves_https_only_with_pinned_images_all_said_at_once() -> None:
    prod = prod_copy()
    assert problems_of(prod) == [
        "llm-mesh:gateway.tlsCredentialName = None: prod serves HTTPS only; name the gateway's TLS secret",
        f"llm-mesh:inference.image = 'vllm/vllm-openai:v0.27.1': {PINNED}",
        f"llm-mesh:modelStore.serverImage = 'nginxinc/nginx-unprivileged:1.30.5-alpine': {PINNED}",
        NOBODY_TOLD,
    ]


def test_prod_images_must_be_pinned_by_digest() -> None:
    prod = {**prod_copy(), **HARDENED}
    prod["models"][0]["canary"]["image"] = "vllm/vllm-openai:latest"
    assert problems_of(prod) == [f"llm-mesh:models[0].canary.image = 'vllm/vllm-openai:latest': {PINNED}"]
    del prod["models"][0]["canary"]["image"]
    assert parse_stack_config(prod).environment == "prod"


def test_prod_serves_only_files_with_size_and_sha256() -> None:
    """Each file without them is named by its key, with the push that records both (to the version's registry, when
    it is imported from one); other environments take paths alone, as a first draft or a copied stack has them."""
    prod = {**prod_copy(), **HARDENED}
    stable = prod["models"][0]["stable"]
    stable["source"] = "gs://llm-registry/llama/v1/"
    stable["files"] = [{"path": "config.json", "size": 2}, {"path": "model.safetensors"}]
    assert problems_of(prod) == [
        "llm-mesh:models[0].stable.files[0] = {'path': 'config.json', 'size': 2}: prod serves only files it can check "
        "(sha256 at every fetch, size in `llm-mesh models verify`); this one has no sha256: record both with "
        "`llm-mesh models push --stack STACK --model llama --version v1 DIR --to gs://llm-registry/llama/v1/` (DIR: "
        "the version's folder)",
        "llm-mesh:models[0].stable.files[1] = {'path': 'model.safetensors'}: prod serves only files it can check "
        "(sha256 at every fetch, size in `llm-mesh models verify`); this one has no sha256 or size: record both with "
        "`llm-mesh models push --stack STACK --model llama --version v1 DIR --to gs://llm-registry/llama/v1/` (DIR: "
        "the version's folder)",
    ]
    for environment in ("dev", "staging"):
        config = parse_stack_config({**prod, "environment": environment})
        assert config.models[0].stable.files[1].sha256 is None


def test_defaults_are_the_safe_ones() -> None:
    config = StackConfig.model_validate(
        {
            "environment": "prod",
            "gcp": {"project": "llm-mesh-test"},
            "models": [served_model(stable=version("v1", files=PUSHED_FILES))],
            "inference": {"image": "a" + DIGEST},
            "modelStore": {"serverImage": "b" + DIGEST},
            "gateway": {"tlsCredentialName": "llm-tls"},
            "observability": TOLD,
        }
    )
    assert config.cluster.deletion_protection is True
    assert config.cluster.regional is True
    assert config.gpu_pools[0].driver_version == "LATEST"
    assert config.gpu_pools[0].spot is False
    assert config.routing.retry_on == "connect-failure,refused-stream"


def test_several_mistakes_are_all_reported() -> None:
    config = with_change("gpuPools.0.machineType", "n2-standard-8")
    config["models"][0]["canaryWeight"] = 101
    assert problems_of(config) == [
        "llm-mesh:gpuPools[0].machineType = 'n2-standard-8': nvidia-l4 needs a g2-standard-* machine type "
        "(g2-standard-4, g2-standard-8, g2-standard-12, g2-standard-16, g2-standard-24, g2-standard-32, "
        "g2-standard-48, g2-standard-96)",
        "llm-mesh:models[0].canaryWeight = 101: must be between 0 and 100 (percent of requests sent to the canary)",
    ]


def test_single_key_and_cross_key_mistakes_come_in_one_run() -> None:
    """A dev copy switched to prod: every mistake at once, not one per run."""
    config = with_change("environment", "prod")
    config["routing"] = {"timeout": "ten minutes"}
    config["gpuPools"].append({"name": "spare"})
    config["models"][0]["contextLength"] = 131072
    assert problems_of(config) == [
        "llm-mesh:routing.timeout = 'ten minutes': 'ten minutes' is not a duration; write e.g. '30s', '1m30s' or "
        "'250ms'",
        "llm-mesh:gpuPools[1].name = 'spare': no model can run on this pool (pays for nodes nothing schedules on); "
        "name it in a model's gpuPool or overflowPools, or remove the pool",
        "llm-mesh:models[0].contextLength = 131072: one 131072-token sequence needs 16.0 GiB of KV cache per GPU "
        "(128 KiB/token) but 1 × nvidia-l4 (tensor parallel 1) has 2.9 GiB after 15.0 GiB of weights per GPU; the "
        "largest context that fits (keeping a 10% margin) is 21152 tokens (pool 'l4')",
        "llm-mesh:gateway.tlsCredentialName = None: prod serves HTTPS only; name the gateway's TLS secret",
        f"llm-mesh:inference.image = 'vllm/vllm-openai:v0.27.1': {PINNED}",
        f"llm-mesh:modelStore.serverImage = 'nginxinc/nginx-unprivileged:1.30.5-alpine': {PINNED}",
        NOBODY_TOLD,
        unchecked("models[0].stable.files[0]", {"path": "config.json"}, "sha256 or size", "v1"),
        unchecked("models[0].stable.files[1]", {"path": "model.safetensors"}, "sha256 or size", "v1"),
        unchecked("models[0].canary.files[0]", {"path": "config.json"}, "sha256 or size", "v2"),
        unchecked("models[0].canary.files[1]", {"path": "model.safetensors"}, "sha256 or size", "v2"),
    ]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "gcp.project",
            "My Project",
            "llm-mesh:gcp.project = 'My Project': a GCP project id: 6-30 lowercase letters, digits and hyphens, "
            "starting with a letter and not ending with a hyphen (the id, not the display name: see `gcloud "
            "projects list`)",
        ),
        (
            "cluster.kubernetesVersion",
            1.3,
            "llm-mesh:cluster.kubernetesVersion = 1.3: YAML read this as a number; write it in quotes, as text "
            "('1.30', not 1.30, which is 1.3)",
        ),
        (
            "models.0.stable.source",
            "https://registry/m",
            "llm-mesh:models[0].stable.source = 'https://registry/m': use gs://BUCKET/PREFIX or s3://BUCKET/PREFIX "
            "(a lowercase bucket name, 3-63 characters)",
        ),
    ],
)
def test_pattern_and_type_mistakes_say_what_to_write(path: str, value: Any, expected: str) -> None:
    assert problems_of(with_change(path, value)) == [expected]


def test_unknown_config_namespace_is_a_typo_not_a_silent_drop() -> None:
    bag = {
        "llm-mesh:environment": "dev",
        "llm-mesh:gcp": '{"project": "llm-mesh-test"}',
        "llm-mesh:models": json.dumps([served_model()]),
        "llm-mes:models": "[]",
    }
    with pytest.raises(ConfigError) as caught:
        config_from_pulumi(bag)
    assert caught.value.problems == [
        "llm-mes:models: unknown config namespace 'llm-mes', read by nothing; did you mean 'llm-mesh:models'? "
        "(this program reads llm-mesh:*; providers read gcp, kubernetes, pulumi:*)"
    ]


def test_misspelled_stack_file_key_is_named(tmp_path: Path) -> None:
    from llm_mesh.engine.stackfile import StackFileError

    (tmp_path / "Pulumi.yaml").write_text("name: llm-mesh\nruntime: python\nstackConfigDir: stacks\n")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text("confg:\n  llm-mesh:environment: dev\n")
    with pytest.raises(StackFileError) as caught:
        read_stack_settings(Project.find(tmp_path), "dev")
    assert str(caught.value).endswith(
        "Pulumi.dev.yaml: unknown top-level key 'confg': did you mean 'config'? (a stack file holds config, "
        "encryptedkey, encryptionsalt, environment, secretsprovider)"
    )


def test_pulumi_config_bag_is_decoded() -> None:
    bag = {
        "llm-mesh:environment": "dev",
        "llm-mesh:gcp": '{"project": "llm-mesh-test"}',
        "llm-mesh:models": json.dumps([served_model()]),
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
    base = {
        "environment": "dev",
        "gcp": {"project": "llm-mesh-test"},
        "gpuPools": [{"name": "l4"}],
        "models": [served_model()],
        **changes,
    }
    assert expected in only_problem(base)


def test_secret_values_are_never_echoed() -> None:
    config = {
        "environment": "dev",
        "gcp": {"project": "llm-mesh-test"},
        "models": [served_model()],
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


def test_one_version_name_is_one_set_of_weights() -> None:
    config = with_change("environment", "dev")
    stable = config["models"][0]["stable"]
    config["models"][0]["canary"] = {**stable, "source": "gs://other-registry/llama/v1-retrained/"}
    [problem] = problems_of(config)
    assert problem.startswith("llm-mesh:models[0].canary.version = 'v1': is also stable's version, with another source")
    config["models"][0]["canary"] = dict(stable)  # the same version on two tracks, as during a promotion
    assert parse_stack_config(config).models[0].canary is not None


def test_the_stack_file_reader_knows_every_credential_of_the_schema() -> None:
    """A plain-text credential in a stack file is refused by key name: the names are the schema's SecretStr keys."""
    from pydantic import BaseModel, SecretStr

    from llm_mesh.engine.stackfile import SECRET_KEYS
    from llm_mesh.plan.config import StackConfig

    def secret_keys(model: type[BaseModel]) -> set[str]:
        found: set[str] = set()
        for name, field in model.model_fields.items():
            for kind in (field.annotation, *getattr(field.annotation, "__args__", ())):
                if kind is SecretStr:
                    found.add(field.alias or name)
                elif isinstance(kind, type) and issubclass(kind, BaseModel):
                    found |= secret_keys(kind)
        return found

    assert secret_keys(StackConfig) == SECRET_KEYS


def test_a_stack_states_its_environment() -> None:
    """No default: one that forgot it would silently be held to prod's rules, or a prod stack to dev's."""
    assert only_problem(with_change("environment", None)) == (
        "llm-mesh:environment: required key is missing; say which environment this stack is: dev, staging or prod "
        "(prod is held to prod's rules: HTTPS, images pinned by digest, alerts that notify someone)"
    )
    assert only_problem(with_change("environment", "qa")) == (
        "llm-mesh:environment = 'qa': Input should be 'dev', 'staging' or 'prod'"
    )


@pytest.mark.parametrize(("models", "value"), [(None, ""), ([], " = []")])
def test_a_stack_serves_a_model(models: list[Any] | None, value: str) -> None:
    """Missing or empty, before any rule blames the default GPU pool for having nothing to run."""
    assert only_problem(with_change("models", models)) == (
        f"llm-mesh:models{value}: no model to serve: add one under llm-mesh:models (its name, shape, contextLength "
        'and stable version with its files; the README\'s "Making your own stack" shows one)'
    )


def test_a_stack_with_no_config_is_told_what_a_stack_needs() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_pulumi({"gcp:project": "llm-mesh-test"})
    assert caught.value.problems == [
        "llm-mesh:*: the stack sets no llm-mesh config; a stack states at least llm-mesh:environment (dev, staging or "
        "prod), llm-mesh:gcp.project and a model under llm-mesh:models: start from a copy of stacks/Pulumi.dev.yaml"
    ]


def test_a_version_with_an_empty_file_list_is_told_how_to_fill_it() -> None:
    config = with_change("models.0.stable.files", [])
    assert problems_of(config) == [
        "llm-mesh:models[0].stable.files = []: list the version's files, weights included: `llm-mesh models push "
        "--stack ENV --model NAME --version V DIR` uploads a model folder and writes them"
    ]


def test_balancing_is_mesh_or_inference_pool() -> None:
    assert parse_stack_config(BASE).models[0].routing.balancing == "mesh"
    pooled = parse_stack_config(with_change("models.0.routing", {"balancing": "inference-pool"}))
    assert pooled.models[0].pooled and pooled.pooled_models() == [pooled.models[0]]
    problem = only_problem(with_change("models.0.routing", {"balancing": "epp"}))
    assert problem.startswith(
        "llm-mesh:models[0].routing.balancing = 'epp': Input should be 'mesh' or 'inference-pool'"
    )


def test_a_pooled_model_needs_the_gateway() -> None:
    config = with_change("models.0.routing", {"balancing": "inference-pool"})
    config["security"] = {"allowGateway": False, "callers": ["cluster.local/ns/apps/sa/chat"]}
    assert only_problem(config) == (
        "llm-mesh:models[0].routing.balancing = 'inference-pool': the endpoint picker chooses pods for requests "
        "through the gateway, and security.allowGateway is false; set balancing: mesh, or allow the gateway"
    )


def test_prod_pins_the_picker_only_when_a_model_uses_it() -> None:
    def picker_problems(config: dict[str, Any]) -> list[str]:
        try:
            parse_stack_config(config)
        except ConfigError as error:
            return [p for p in error.problems if "endpointPickerImage" in p]
        return []

    prod = with_change("environment", "prod")
    assert picker_problems(prod) == []
    prod["models"][0]["routing"] = {"balancing": "inference-pool"}
    (problem,) = picker_problems(prod)
    assert problem.startswith("llm-mesh:inference.endpointPickerImage = 'registry.k8s.io/gateway-api-inference-")
    assert "prod images must be pinned by digest" in problem
    prod["inference"] = {"endpointPickerImage": "registry.k8s.io/gateway-api-inference-extension/epp" + DIGEST}
    assert picker_problems(prod) == []
