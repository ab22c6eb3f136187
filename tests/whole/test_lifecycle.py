"""A model's whole life, driven by the project's own commands on a frozen prod stack: first deploy, a canary
added, advanced to maxWeight, promoted, the next canary started and rolled back, a version bumped with no
canary, an Istio revision upgrade. Every `pulumi up` a command runs is taken as the engine would take it: the
offline preview of the stack file as it is then (a duplicate URN fails it), and the transition from the
previous up checked: no name still held by an object the same update deletes, no protected resource replaced
or deleted, and the policy pack passing."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_mesh.engine.stackfile import Project, read_stack_settings
from llm_mesh.ops import canary
from llm_mesh.ops.diff import diff, states
from llm_mesh.ops.transitions import cannot_apply
from llm_mesh.plan.config import StackConfig, config_from_pulumi
from tests.conftest import PICKER_DIGEST, ROOT, Cli

FIXTURE = ROOT / "tests" / "fixtures" / "lifecycle" / "Pulumi.prod.yaml"
MODEL = "llama-31-8b"


class PreviewingDeployer:
    """Each `pulumi up` as the engine would take it, with the transition from the previous one checked."""

    def __init__(self, project: Project, cli: Cli, folder: Path) -> None:
        self.project, self.cli, self.folder = project, cli, folder
        self.ups: list[str] = []
        self.last: dict[str, Any] | None = None

    def ready(self, stack: str) -> None:
        pass

    def apply(self, stack: str, message: str) -> None:
        path = self.folder / f"up-{len(self.ups):02d}.json"
        preview = self.cli("--project", str(self.project.root), "preview", "--stack", stack, "--json", str(path))
        assert preview.returncode == 0, f"`{message}` does not preview: {preview.stderr}"
        document = json.loads(path.read_text())
        policy = self.cli("--project", str(self.project.root), "policy", str(path))
        assert policy.returncode == 0, f"`{message}` fails the policy pack:\n{policy.stdout}"
        if self.last is not None:
            assert transition_problems(self.last, document) == [], message
        self.ups.append(message)
        self.last = document


def transition_problems(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    result = diff(states(before), states(after))
    problems = [blocker.message() for blocker in cannot_apply(result)]
    protected = {step["urn"] for step in before["steps"] if step["newState"].get("protect")}
    problems += [
        f"{change.kind}s protected {change.state.urn}"
        for change in result.changes
        if change.kind in ("replace", "delete") and change.state.urn in protected
    ]
    return problems


def edit(project: Project, change: Callable[[dict[str, Any]], None]) -> None:
    """The stack file edited by hand, as a user does between commands."""
    path = project.stack_file("prod")
    document = yaml.safe_load(path.read_text())
    change(document["config"])
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def served(config: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in config["llm-mesh:models"] if m["name"] == MODEL)


def version(name: str, config: dict[str, Any]) -> dict[str, Any]:
    return {**served(config)["stable"], "version": name, "source": f"gs://llm-mesh-registry/{MODEL}/{name}/"}


@pytest.fixture
def life(tmp_path: Path, cli: Cli) -> tuple[Project, PreviewingDeployer, canary.Progression]:
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    for entry in ("Pulumi.yaml", "__main__.py", "components"):
        (root / entry).symlink_to(ROOT / entry)
    shutil.copy(FIXTURE, root / "stacks" / "Pulumi.prod.yaml")
    project = Project.find(root)
    deployer = PreviewingDeployer(project, cli, tmp_path)

    def load() -> StackConfig:
        return config_from_pulumi(read_stack_settings(project, "prod").config)

    run = canary.Progression(project, "prod", MODEL, load, deployer, canary.PrometheusApi(""), lambda _: None)
    return project, deployer, run


def test_a_models_life_applies_at_every_step(life: tuple[Project, PreviewingDeployer, canary.Progression]) -> None:
    project, deployer, run = life
    deployer.apply("prod", "first deploy")
    # The kubeconfig's server moves between the IP and the DNS endpoint: the unchanged clusterIdentifier keeps the
    # provider, and every Kubernetes object, in place.
    edit(project, lambda config: config["llm-mesh:cluster"].update(dnsEndpoint=False))
    deployer.apply("prod", "kubeconfig on the IP endpoint")
    edit(project, lambda config: config["llm-mesh:cluster"].pop("dnsEndpoint"))
    deployer.apply("prod", "kubeconfig on the DNS endpoint")

    def add_canary(name: str) -> None:
        def change(config: dict[str, Any]) -> None:
            served(config)["canary"] = version(name, config)
            served(config)["canaryWeight"] = 0

        edit(project, change)
        deployer.apply("prod", f"canary {name} added")

    add_canary("v2")
    rules = run.load_config().canary
    while (split := canary.split_of(run.load_config(), MODEL)).weight < rules.max_weight:
        run.step_to(canary.advanced(split, rules, None))
    run.promote()
    assert canary.split_of(run.load_config(), MODEL) == canary.Split(MODEL, "v2", None, 0)

    add_canary("v3")
    run.step_to(20)
    run.rollback()

    def drop_canary(config: dict[str, Any]) -> None:
        del served(config)["canary"]
        del served(config)["canaryWeight"]

    edit(project, drop_canary)
    deployer.apply("prod", "canary v3 dropped")
    edit(project, lambda config: served(config).update(stable=version("v4", config)))
    deployer.apply("prod", "stable bumped to v4, no canary")

    # Istio: the new revision beside the old, workloads moved, then the old revision removed.
    old = run.load_config().istio.version
    minor = int(old.split(".")[1]) + 1
    edit(project, lambda config: config.update({"llm-mesh:istio": {"version": f"1.{minor}.0", "previousVersion": old}}))
    deployer.apply("prod", "istio revision upgrade: both revisions")
    edit(project, lambda config: config.update({"llm-mesh:istio": {"version": f"1.{minor}.0"}}))
    deployer.apply("prod", "istio revision upgrade: old revision removed")

    assert deployer.ups == [
        "first deploy",
        "kubeconfig on the IP endpoint",
        "kubeconfig on the DNS endpoint",
        "canary v2 added",
        f"canary {MODEL}: weight 20%",
        f"canary {MODEL}: weight 40%",
        f"canary {MODEL}: v2 becomes stable",
        f"canary {MODEL}: canary removed after promotion",
        "canary v3 added",
        f"canary {MODEL}: weight 20%",
        f"canary {MODEL}: weight 0%",
        "canary v3 dropped",
        "stable bumped to v4, no canary",
        "istio revision upgrade: both revisions",
        "istio revision upgrade: old revision removed",
    ]


def route_weights(document: dict[str, Any]) -> dict[str, float]:
    """The pooled model's HTTPRoute split, pool by pool, as the up declares it."""
    (route,) = [s["newState"]["inputs"] for s in document["steps"] if s["newState"]["type"].endswith(":HTTPRoute")]
    refs = route["spec"]["rules"][0]["backendRefs"]
    return {r["name"].removeprefix(f"{MODEL}-"): r.get("weight", 100.0) for r in refs}


def test_a_canary_lives_on_the_inference_pool_path(
    life: tuple[Project, PreviewingDeployer, canary.Progression],
) -> None:
    """The same commands on a model served through InferencePools: each step is the route's weights, each up
    applies after the one before, promotion and rollback end on the stable pool alone."""
    project, deployer, run = life

    def pooled(config: dict[str, Any]) -> None:
        served(config)["routing"] = {"balancing": "inference-pool"}
        config["llm-mesh:inference"]["endpointPickerImage"] = PICKER_DIGEST

    deployer.apply("prod", "first deploy")
    edit(project, pooled)
    deployer.apply("prod", "switched to inference-pool")
    assert deployer.last is not None and route_weights(deployer.last) == {"stable": 100.0}

    def add_canary(config: dict[str, Any]) -> None:
        served(config)["canary"] = version("v2", config)
        served(config)["canaryWeight"] = 0

    edit(project, add_canary)
    deployer.apply("prod", "canary v2 added")
    # At weight 0 the canary's pool is named at weight 0: Istio builds its backend before the first step.
    assert deployer.last is not None and route_weights(deployer.last) == {"canary": 0.0, "stable": 100.0}
    rules = run.load_config().canary
    seen = []
    while (split := canary.split_of(run.load_config(), MODEL)).weight < rules.max_weight:
        run.step_to(canary.advanced(split, rules, None))
        assert deployer.last is not None
        seen.append(route_weights(deployer.last))
    assert seen == [{"canary": 20.0, "stable": 80.0}, {"canary": 40.0, "stable": 60.0}]
    run.promote()
    assert deployer.last is not None and route_weights(deployer.last) == {"stable": 100.0}
    edit(project, lambda config: served(config).update(canary=version("v3", config), canaryWeight=0))
    deployer.apply("prod", "canary v3 added")
    run.step_to(20)
    run.rollback()
    assert deployer.last is not None and route_weights(deployer.last) == {"canary": 0.0, "stable": 100.0}
    assert canary.split_of(run.load_config(), MODEL) == canary.Split(MODEL, "v2", "v3", 0)


def test_the_transition_check_sees_what_the_engine_refuses() -> None:
    """The checks of every step can fail: a name taken over from an object deleted in the same update, a
    protected resource deleted."""

    def step(urn: str, name: str, protect: bool = False) -> dict[str, Any]:
        inputs = {"kind": "Job", "metadata": {"name": name, "namespace": "inference"}}
        state = {"urn": urn, "type": "kubernetes:batch/v1:Job", "custom": True, "inputs": inputs, "protect": protect}
        return {"op": "create", "urn": urn, "newState": state}

    def urn(name: str) -> str:
        return f"urn:pulumi:prod::llm-mesh::kubernetes:batch/v1:Job::{name}"

    before = {"steps": [step(urn("stable"), "gate-v1"), step(urn("canary"), "gate-v2", protect=True)]}
    after = {"steps": [step(urn("stable"), "gate-v2")]}
    problems = transition_problems(before, after)
    assert len(problems) == 2
    assert "AlreadyExists" in problems[0]
    assert problems[1] == f"deletes protected {urn('canary')}"
