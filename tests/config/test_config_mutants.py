"""What `make mutate` found untested in the config validation: each test kills mutants a real bug could look like."""

from __future__ import annotations

from llm_mesh.plan.config import ConfigError
from tests.config.builders import BASE, only_problem, problems_of, with_change


def test_problems_are_one_per_line() -> None:
    """What `pulumi up` prints: a RunError's text, one problem a line."""
    assert str(ConfigError(["llm-mesh:a = 1: first", "llm-mesh:b = 2: second"])) == (
        "llm-mesh:a = 1: first\nllm-mesh:b = 2: second"
    )


def test_empty_list_says_how_many_entries_it_needs() -> None:
    assert only_problem(with_change("gpuPools", [])) == "llm-mesh:gpuPools = []: list at least 1 entry"


def test_missing_key_without_a_hint_ends_the_line() -> None:
    assert only_problem(with_change("gcp.project", None)) == "llm-mesh:gcp.project: required key is missing"


def test_unknown_key_like_no_known_one_lists_them_without_a_guess() -> None:
    assert only_problem(with_change("gcp.zzzzzz", 1)) == (
        "llm-mesh:gcp.zzzzzz: unknown key (known keys: project, region, zones)"
    )


def test_unknown_key_inside_a_list_entry_and_an_optional_section() -> None:
    """The known keys are those of the section the key is in: models[0].canary, past the list and the Optional."""
    assert only_problem(with_change("models.0.canary.verzion", "v3")) == (
        "llm-mesh:models[0].canary.verzion: unknown key; did you mean 'version'? "
        "(known keys: version, source, image, files)"
    )
    assert only_problem(with_change("models.0.shape.zzz", 1)) == (
        "llm-mesh:models[0].shape.zzz: unknown key (known keys: preset, parametersBillions, layers, attentionHeads, "
        "kvHeads, headDim, nativeContext, dtype)"
    )


def test_a_key_indented_one_level_too_deep_is_blamed_on_indentation() -> None:
    """canaryWeight under canary: (a key of the model), environment under cluster: (a config key of its own)."""
    assert only_problem(with_change("models.0.canary.canaryWeight", 10)) == (
        "llm-mesh:models[0].canary.canaryWeight: unknown key; it is a key of llm-mesh:models[0]: check its indentation"
    )
    assert only_problem(with_change("cluster.environment", "dev")) == (
        "llm-mesh:cluster.environment: unknown key; it is a config key of its own, llm-mesh:environment: "
        "check its indentation"
    )


def test_cross_key_mistakes_are_found_past_a_deeply_nested_one() -> None:
    """The second pass drops models[0].stable.source (four keys deep) and still finds the unused pool."""
    config = with_change("models.0.stable.source", "https://registry/m")
    config["gpuPools"].append({"name": "spare"})
    assert problems_of(config) == [
        "llm-mesh:models[0].stable.source = 'https://registry/m': use gs://BUCKET/PREFIX or s3://BUCKET/PREFIX "
        "(a lowercase bucket name, 3-63 characters)",
        "llm-mesh:gpuPools[1].name = 'spare': no model can run on this pool (pays for nodes nothing schedules on); "
        "name it in a model's gpuPool or overflowPools, or remove the pool",
    ]
    assert "spare" not in str(BASE), "BASE is untouched"
