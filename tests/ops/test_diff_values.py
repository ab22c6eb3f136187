"""`llm-mesh diff` on values as real documents hold them: previews without their unchanged resources, long and
JSON strings, properties that force a replacement, unknowns, and Pulumi's own counts."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from llm_mesh.engine.readers import DocumentError
from llm_mesh.engine.values import UNKNOWN
from llm_mesh.ops.diff import REPLACED_BY, State, diff, json_report, restacked, states, text_report
from tests.conftest import ENGINE_SAMPLES, STACKS, Cli, needs_engine_samples

needs_samples = pytest.mark.skipif(not ENGINE_SAMPLES.is_dir(), reason="the shared samples of real engine output")


def sample(name: str) -> dict[str, Any]:
    return json.loads((ENGINE_SAMPLES / name).read_text())


def inputs_of(document: dict[str, Any], type_: str, name: str = "") -> dict[str, Any]:
    """The inputs of the resource of this type (and name, when several) in a preview, to change in place."""
    found = [s for s in document["steps"] if s["newState"]["type"] == type_ and (not name or s["urn"].endswith(name))]
    assert found, f"no {type_} {name} in the preview"
    inputs: dict[str, Any] = found[0]["newState"]["inputs"]
    return inputs


def set_path(value: dict[str, Any], path: str, new: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        value = value[key]
    value[last] = new


def report(base: dict[str, Any], head: dict[str, Any], markdown: bool = False) -> list[str]:
    before, after = states(base), states(head)
    return text_report(diff(before, after), before, after, markdown=markdown).splitlines()


# 1. A preview that leaves out its unchanged resources


@needs_engine_samples
def test_a_preview_without_its_unchanged_resources_is_refused_with_the_fix(cli: Cli, tmp_path: Path) -> None:
    """Without `same` steps every unchanged resource of the export would read as deleted."""
    plain = sample("sample-preview-update.json")
    plain["steps"] = [s for s in plain["steps"] if s["op"] != "same"]
    assert plain["changeSummary"] == {"same": 15, "update": 1}
    with pytest.raises(DocumentError) as refused:
        states(plain)
    assert str(refused.value) == (
        "this preview lists only the changes (15 unchanged resources left out): "
        "write it with `pulumi preview --json --show-sames`"
    )
    head = tmp_path / "plain.json"
    head.write_text(json.dumps(plain))
    result = cli("diff", str(ENGINE_SAMPLES / "sample-export.json"), str(head))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [f"error: engine document {head}: {refused.value}"]


@needs_engine_samples
def test_previews_with_all_their_resources_are_read() -> None:
    """With --show-sames, or with nothing unchanged (a new stack), or as the offline preview writes it."""
    assert len(states(sample("sample-preview-update.json"))) == 16
    assert len(states(sample("sample-preview-creates.json"))) == 16
    assert len(states(sample("sample-preview-deletes.json"))) == 2


# 2. Long, multi-line and JSON strings


def test_a_change_inside_dashboard_json_is_shown_at_its_path(previews: dict[str, Any]) -> None:
    head = copy.deepcopy(previews["prod"])
    dashboard = inputs_of(head, "gcp:monitoring/dashboard:Dashboard")
    layout = json.loads(dashboard["dashboardJson"])
    title = layout["mosaicLayout"]["tiles"][3]["widget"]["title"]
    layout["mosaicLayout"]["tiles"][3]["widget"]["title"] = "p99 latency"
    dashboard["dashboardJson"] = json.dumps(layout, separators=(",", ":"))
    assert report(previews["prod"], head)[:3] == [
        "llm-mesh:observability:Observability observability",
        "  ~ gcp:monitoring/dashboard:Dashboard observability-dashboard (update)",
        f"      dashboardJson » mosaicLayout.tiles[3].widget.title: {title} → p99 latency",
    ]


def test_the_same_json_written_differently_is_said_so() -> None:
    base = export({"dashboardJson": '{"a": 1, "b": [1, 2]}'})
    head = export({"dashboardJson": '{"b":[1,2],"a":1}'})
    assert report(base, head)[1:3] == [
        "  ~ t:m:R r (update)",
        "      dashboardJson: the same JSON, written differently",
    ]


def test_a_change_at_the_end_of_a_long_config_file_is_a_line_diff(previews: dict[str, Any]) -> None:
    head = copy.deepcopy(previews["prod"])
    data = inputs_of(head, "kubernetes:core/v1:ConfigMap", "observability-collector-config")["data"]
    text = data["config.yaml"]
    kept, last = text.rstrip("\n").rsplit("\n", 1)
    data["config.yaml"] = f"{kept}\n{last}-changed{text[len(kept) + 1 + len(last) :]}"
    lines = report(previews["prod"], head)
    start = lines.index("      data.config.yaml:  [forces replacement]")
    body = lines[start + 1 : lines.index("", start)]
    assert body[0].startswith("        @@ ") and body[-2:] == [f"        -{last}", f"        +{last}-changed"]
    assert all(line.startswith("        ") for line in body) and len(body) <= 4, "only the change and its context"


def test_a_long_single_line_is_shown_whole_without_a_hunk_header() -> None:
    old, new = "x" * 100 + "-old", "x" * 100 + "-new"
    assert report(export({"script": old}), export({"script": new}))[2:5] == [
        "      script:",
        f"        -{old}",
        f"        +{new}",
    ]


def test_a_digest_fits_on_one_line() -> None:
    old, new = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert f"      image: {old} → {new}" in report(export({"image": old}), export({"image": new}))


def test_markdown_code_survives_backticks_and_a_diff_is_fenced() -> None:
    base = export({"title": "run `make`", "script": "echo ```\nstep one\n"})
    head = export({"title": "run `make test`", "script": "echo ```\nstep two\n"})
    assert report(base, head, markdown=True)[2:10] == [
        "    - `script:`",
        "      ````diff",
        "      @@ -1,2 +1,2 @@",
        "       echo ```",
        "      -step one",
        "      +step two",
        "      ````",
        "    - `` title: run `make` → run `make test` ``",
    ]


def test_json_output_keeps_whole_values() -> None:
    old, new = "line\n" * 50, "line\n" * 49 + "last\n"
    result = diff(states(export({"script": old})), states(export({"script": new})))
    (change,) = json_report(result)["changes"]
    assert change["properties"] == [{"path": "script", "old": old, "new": new, "forcesReplacement": False}]


def export(inputs: dict[str, Any], type_: str = "t:m:R") -> dict[str, Any]:
    return {"version": 3, "deployment": {"resources": [{"urn": f"urn:pulumi:s::p::{type_}::r", "type": type_, "inputs": inputs}]}}  # fmt: skip


# 3. Properties that force a replacement


@pytest.mark.parametrize(
    ("type_", "path", "value"),
    [
        ("gcp:projects/iAMMember:IAMMember", "role", "roles/monitoring.editor"),
        ("gcp:projects/iAMMember:IAMMember", "project", "other-project"),
        ("gcp:serviceaccount/iAMMember:IAMMember", "member", "serviceAccount:p.svc.id.goog[ns/other]"),
        ("gcp:storage/bucketIAMMember:BucketIAMMember", "bucket", "another-bucket"),
        ("gcp:compute/routerNat:RouterNat", "region", "europe-west4"),
        ("gcp:compute/firewall:Firewall", "direction", "EGRESS"),
        ("gcp:compute/router:Router", "network", "other-vpc"),
        ("gcp:monitoring/slo:Slo", "sloId", "latency"),
        ("gcp:monitoring/customService:CustomService", "serviceId", "other-service"),
        ("gcp:logging/metric:Metric", "project", "other-project"),
        ("gcp:serviceaccount/account:Account", "accountId", "other-account"),
        ("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "roleRef.name", "other-role"),
        ("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding", "roleRef.name", "view"),
        ("kubernetes:helm.sh/v3:Release", "namespace", "other-namespace"),
        ("kubernetes:networking.istio.io/v1:VirtualService", "metadata.name", "renamed"),
    ],
)
def test_a_property_its_provider_cannot_change_in_place(
    previews: dict[str, Any], type_: str, path: str, value: Any
) -> None:
    head = copy.deepcopy(previews["prod"])
    set_path(inputs_of(head, type_), path, value)
    (change,) = diff(states(previews["prod"]), states(head)).changes
    assert (change.state.type, change.kind, [(p.path, p.replaces) for p in change.properties]) == (
        type_,
        "replace",
        [(path, True)],
    )


@pytest.mark.parametrize(
    ("type_", "path", "value"),
    [
        # pulumi-gcp bridges the Terraform provider, which resizes a node pool's machines in place since 5.x.
        ("gcp:container/nodePool:NodePool", "nodeConfig.machineType", "g2-standard-48"),
        ("gcp:container/cluster:Cluster", "ipAllocationPolicy.stackType", "IPV4_IPV6"),
        ("gcp:compute/firewall:Firewall", "description", "changed"),
        ("gcp:logging/metric:Metric", "description", "changed"),
        ("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "subjects", []),
    ],
)
def test_a_property_its_provider_changes_in_place(previews: dict[str, Any], type_: str, path: str, value: Any) -> None:
    head = copy.deepcopy(previews["prod"])
    set_path(inputs_of(head, type_), path, value)
    (change,) = diff(states(previews["prod"]), states(head)).changes
    assert (change.kind, any(p.replaces for p in change.properties)) == ("update", False)


def test_every_gcp_type_the_stacks_declare_has_its_replacing_properties(previews: dict[str, Any]) -> None:
    declared = {s["newState"]["type"] for stack in STACKS for s in previews[stack]["steps"]}
    assert {t for t in declared if t.startswith("gcp:")} - REPLACED_BY.keys() == set()


# 4. Values known only after deploy


def resolved(value: Any) -> Any:
    """What an export holds where a preview has an unknown: the value the deployment computed."""
    if value == UNKNOWN:
        return "computed-by-the-deployment"
    if isinstance(value, dict):
        return {k: resolved(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolved(v) for v in value]
    return value


def test_a_preview_against_an_export_of_the_same_stack_changes_nothing(previews: dict[str, Any]) -> None:
    """The export knows what the preview leaves to the deployment (IAM members, kubeconfig): no change, said once."""
    preview = previews["prod"]
    deployed = {"version": 3, "deployment": {"resources": [resolved(s["newState"]) for s in preview["steps"]]}}
    unknowns = json.dumps([s["newState"].get("inputs") for s in preview["steps"]]).count(UNKNOWN)
    result = diff(states(deployed), states(preview))
    assert (result.changes, result.known_after_deploy) == ([], unknowns)
    assert report(deployed, preview) == [
        f"{unknowns} values known in one document and (known after deploy) in the other: not counted as changes",
        "",
        f"Resources: {len(preview['steps'])} unchanged",
    ]
    assert json_report(result)["summary"]["knownAfterDeploy"] == unknowns


def test_an_unknown_is_shown_in_words() -> None:
    lines = report(export({"a": 1}), export({"a": 1, "email": UNKNOWN}))
    assert "      email: (none) → (known after deploy)" in lines


# 5. Counts as Pulumi counts


def test_the_summary_counts_the_stack_as_pulumi_does(previews: dict[str, Any]) -> None:
    """`llm-mesh preview --stack dev` says `+ 104 to create`; a diff of dev against itself, 104 unchanged."""
    dev = previews["dev"]
    created = dev["changeSummary"]["create"]
    assert diff(states(dev), states(dev)).summary() == f"Resources: {created} unchanged"
    new_stack: dict[str, State] = {}
    assert diff(new_stack, states(dev)).summary() == f"Resources: + {created} to create, 0 unchanged"


def test_two_stacks_have_one_stack_resource_each(previews: dict[str, Any]) -> None:
    """dev against prod: their stack resources (llm-mesh-dev, llm-mesh-prod) are the same one, not a create and
    a delete."""
    dev, prod = states(previews["dev"]), states(previews["prod"])
    result = diff(dev, restacked(prod, "prod", "dev"))
    assert not any(c.state.type == "pulumi:pulumi:Stack" for c in result.changes)


@needs_engine_samples
@pytest.mark.parametrize("head", ["sample-preview-update.json", "sample-preview-deletes.json"])
def test_real_engine_counts(head: str) -> None:
    """Against the export it was previewed from, a preview's diff counts what Pulumi's changeSummary counts."""
    result = diff(states(sample("sample-export.json")), states(sample(head)))
    counted: dict[str, int] = {kind: n for kind, n in result.counts().items() if n}
    assert {"same": result.unchanged, **counted} == sample(head)["changeSummary"]


def test_a_secret_fingerprinted_on_one_side_only_has_not_changed(previews: dict[str, Any]) -> None:
    """An export has no llm-mesh fingerprints: that says nothing about the kubeconfig having changed."""
    without = copy.deepcopy(previews["prod"])
    del without["offline"]["secretFingerprints"]
    assert diff(states(without), states(previews["prod"])).changes == []


# 6. A preview that ended with an error


def failed_preview(message: str) -> dict[str, Any]:
    """What `pulumi preview --json` writes when a resource fails: the steps made before it, no changeSummary."""
    failed = sample("sample-preview-creates.json")
    failed["steps"] = failed["steps"][:3]
    del failed["changeSummary"]
    failed["diagnostics"] = [
        {"prefix": "warning: ", "message": "a warning first\n", "severity": "warning"},
        {"urn": failed["steps"][1]["urn"], "prefix": "error: ", "message": message, "severity": "error"},
        {"prefix": "error: ", "message": "preview failed\n", "severity": "error"},
    ]
    return failed


@needs_engine_samples
def test_a_preview_that_ended_with_an_error_is_refused_with_its_first_error(cli: Cli, tmp_path: Path) -> None:
    """Its steps stop at the error: every resource after it would read as deleted."""
    long = "  aws:s3/bucket:Bucket resource 'docs' has a problem:\n    " + "the bucket name is taken; " * 8 + "\n"
    with pytest.raises(DocumentError) as refused:
        states(failed_preview(long))
    said = " ".join(long.split())[:117] + "..."
    assert str(refused.value) == (
        f"the preview ended with an error ({said}): its steps are incomplete; fix the error and preview again"
    )
    assert said.startswith("aws:s3/bucket:Bucket resource 'docs' has a problem: the bucket name is taken;")
    head = tmp_path / "failed.json"
    head.write_text(json.dumps(failed_preview("bucket name taken\n")))
    result = cli("diff", str(ENGINE_SAMPLES / "sample-export.json"), str(head))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        f"error: engine document {head}: the preview ended with an error (bucket name taken): its steps are "
        "incomplete; fix the error and preview again"
    ]


def test_an_offline_preview_with_an_error_diagnostic_is_read_whole(previews: dict[str, Any]) -> None:
    """llm-mesh's offline preview records the whole program before writing what it logged: nothing is missing."""
    logged = copy.deepcopy(previews["dev"])
    assert logged["diagnostics"] == [] and "offline" in logged
    logged["diagnostics"].append({"severity": "error", "message": "a policy the program logged"})
    assert states(logged) == states(previews["dev"])
    assert states({"steps": [], "diagnostics": [{"severity": "warning", "message": "deprecated"}]}) == {}


# 7. The engine's verdict, and providers the table does not cover


@needs_engine_samples
@pytest.mark.parametrize(
    ("ops", "reasons"),
    [
        (["replace"], ["code"]),
        (["replace"], []),  # the engine says so without a reason the table knows
        (["create-replacement", "replace", "delete-replaced"], ["code"]),
    ],
)
def test_the_engine_saying_it_replaces_wins(ops: list[str], reasons: list[str]) -> None:
    head = sample("sample-preview-update.json")
    i, step = next((i, s) for i, s in enumerate(head["steps"]) if s["op"] == "update")
    steps = []
    for op in ops:
        replacing = {**copy.deepcopy(step), "op": op, "replaceReasons": reasons}
        if op == "delete-replaced":
            del replacing["newState"]
        steps.append(replacing)
    head["steps"][i : i + 1] = steps
    base = sample("sample-export.json")
    (change,) = diff(states(base), states(head)).changes
    assert change.kind == "replace"
    assert change.replace_known
    assert [(p.path, p.replaces) for p in change.properties] == [("code.hash", bool(reasons))]
    lines = report(base, head)
    assert lines[0] == "Replaced (deleted and created again): aws:lambda/function:Function docsHandler"
    assert "  +- aws:lambda/function:Function docsHandler (replace)" in lines
    assert "Resources: +- 1 to replace, 15 unchanged" in lines


def test_the_properties_the_engine_names_are_the_ones_that_force_the_replacement(previews: dict[str, Any]) -> None:
    """The table would mark the selector; the engine, which names its reasons, says the replicas."""
    head = copy.deepcopy(previews["prod"])
    step = next(s for s in head["steps"] if s["urn"].endswith("Deployment::model-llama-31-8b-stable"))
    step.update(op="replace", replaceReasons=["spec.replicas"])
    spec = step["newState"]["inputs"]["spec"]
    spec["replicas"] = 7
    spec["selector"]["matchLabels"]["extra"] = "label"
    (change,) = diff(states(previews["prod"]), states(head)).changes
    assert change.kind == "replace"
    assert [(p.path, p.replaces) for p in change.properties] == [
        ("spec.replicas", True),
        ("spec.selector.matchLabels.extra", False),
    ]


@needs_engine_samples
def test_an_update_of_a_provider_the_table_does_not_cover_is_not_stated_confidently() -> None:
    """A new deployment of the sample renames its bucket and role: aws is not in REPLACED_BY, and a `create`
    step says nothing about a replacement."""
    base, head = sample("sample-export.json"), sample("sample-preview-creates.json")
    lines = report(base, head)
    assert "  ~ aws:s3/bucket:Bucket docs (update; whether it replaces is not known offline for aws)" in lines
    assert "  ~ aws:iam/role:Role docsHandler (update; whether it replaces is not known offline for aws)" in lines
    assert not any(line.strip().endswith("(update)") for line in lines)
    markdown = report(base, head, markdown=True)
    assert "- ~ aws:s3/bucket:Bucket docs (update; whether it replaces is not known offline for aws)" in markdown
    changes = json_report(diff(states(base), states(head)))["changes"]
    bucket = next(c for c in changes if c["type"] == "aws:s3/bucket:Bucket")
    assert bucket["replaceKnown"] is False and bucket["properties"][0]["path"] == "bucket"
    assert all(c["replaceKnown"] is False for c in changes)


def test_an_update_of_a_covered_provider_or_a_component_is_stated(previews: dict[str, Any]) -> None:
    head = copy.deepcopy(previews["prod"])
    set_path(inputs_of(head, "gcp:logging/metric:Metric"), "description", "changed")
    (change,) = json_report(diff(states(previews["prod"]), states(head)))["changes"]
    assert (change["op"], "replaceKnown" in change) == ("update", False)
    assert report(export({"a": 1}), export({"a": 2}))[1] == "  ~ t:m:R r (update)"


# 8. Lists: an element removed or added is one line, not every later one shifted


def dashboard_tiles(document: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    inputs = inputs_of(document, "gcp:monitoring/dashboard:Dashboard")
    dashboard = json.loads(inputs["dashboardJson"])
    return dashboard, dashboard["mosaicLayout"]["tiles"]


def set_dashboard(document: dict[str, Any], dashboard: dict[str, Any]) -> None:
    inputs_of(document, "gcp:monitoring/dashboard:Dashboard")["dashboardJson"] = json.dumps(dashboard)


def test_a_removed_dashboard_tile_is_one_line(previews: dict[str, Any]) -> None:
    head = copy.deepcopy(previews["prod"])
    dashboard, tiles = dashboard_tiles(head)
    title = tiles[5]["widget"]["title"]
    del tiles[5]
    tiles[6]["height"] += 1  # a later tile changed too: still at its path
    set_dashboard(head, dashboard)
    lines = report(previews["prod"], head)
    start = lines.index("  ~ gcp:monitoring/dashboard:Dashboard observability-dashboard (update)")
    assert lines[start + 1 : lines.index("", start)] == [
        f"      dashboardJson » mosaicLayout.tiles[5]: removed (widget.title={title})",
        f"      dashboardJson » mosaicLayout.tiles[6].height: {tiles[6]['height'] - 1} → {tiles[6]['height']}",
    ]


def test_an_added_dashboard_tile_is_one_line(previews: dict[str, Any]) -> None:
    head = copy.deepcopy(previews["prod"])
    dashboard, tiles = dashboard_tiles(head)
    tiles.insert(7, {**copy.deepcopy(tiles[7]), "widget": {"title": "New tile"}})
    set_dashboard(head, dashboard)
    assert report(previews["prod"], head)[1:3] == [
        "  ~ gcp:monitoring/dashboard:Dashboard observability-dashboard (update)",
        "      dashboardJson » mosaicLayout.tiles[7]: added (widget.title=New tile)",
    ]


def test_a_removed_env_entry_is_one_line_and_json_keeps_it_whole(previews: dict[str, Any]) -> None:
    head = copy.deepcopy(previews["prod"])
    deployment = inputs_of(head, "kubernetes:apps/v1:Deployment", "model-llama-31-8b-stable")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert len(env) > 3
    removed = env.pop(1)
    result = diff(states(previews["prod"]), states(head))
    (change,) = result.changes
    path = "spec.template.spec.containers[0].env[1]"
    assert [(p.path, p.old, p.element) for p in change.properties] == [(path, removed, True)]
    assert report(previews["prod"], head)[2] == f"      {path}: removed (name={removed['name']})"
    (reported,) = json_report(result)["changes"]
    assert reported["properties"] == [{"path": path, "old": removed, "new": None, "forcesReplacement": False}]


def test_list_elements_without_a_name_are_aligned_by_value() -> None:
    base = export({"args": ["--a", "--b", "--c", "--d"], "empty": []})
    head = export({"args": ["--a", "--c", "--d", "--e"], "empty": ["x"]})
    assert report(base, head)[2:5] == [
        "      args[1]: removed (--b)",
        "      args[3]: added (--e)",
        "      empty[0]: added (x)",
    ]


def test_an_unpriced_pool_makes_its_sides_cost_unknown_not_lower() -> None:
    """`$0.00–$0.31/h → $0.00–$0.00/h (not priced: a3-highgpu-8g)` read as a saving; the total is unknown."""
    from llm_mesh.engine.summary import GpuCapacity
    from llm_mesh.ops.capacity import Capacity, Prices, capacity_line

    prices = Prices("2026-11-01", "USD", "us-central1", {"g2-standard-8": {"onDemand": 0.85, "spot": 0.31}})
    l4 = GpuCapacity("gpu-l4", "nvidia-l4", 0, 1, True, "g2-standard-8", 0, 1)
    h100 = GpuCapacity("gpu-h100", "nvidia-h100-80gb", 0, 8, False, "a3-highgpu-8g", 0, 1)
    line = capacity_line(Capacity([l4]), Capacity([h100]), prices)
    assert (
        "list price $0.00–$0.31/h → unknown (USD, us-central1, prices of 2026-11-01) (not priced: a3-highgpu-8g)"
        in line
    )
    assert "$0.00–$0.00" not in line
