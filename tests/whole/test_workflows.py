"""The GitHub Actions workflows: valid against GitHub's workflow schema (check-jsonschema's copy, offline), and
the facts the schema cannot see: what runs without secrets, which stacks are reviewed and deployed in what
order, how Google credentials are obtained, how actions are pinned and which inputs they take."""

from __future__ import annotations

import re
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
STACKS = ["dev", "staging", "prod"]
MARKER = "<!-- llm-mesh-review -->"

# The inputs each action declares in its action.yml at the commit the workflows pin (the schema checks none of
# them, and a misspelt input is only a warning in a run). Update with the pin.
ACTION_INPUTS = {
    "actions/checkout": {"fetch-depth", "persist-credentials"},
    "actions/setup-python": {"python-version", "cache", "cache-dependency-path"},
    "actions/upload-artifact": {"name", "path", "if-no-files-found", "retention-days"},
    "actions/github-script": {"script", "github-token", "result-encoding", "retries"},
    "google-github-actions/auth": {"workload_identity_provider", "service_account", "project_id", "audience"},
    "google-github-actions/setup-gcloud": {"version", "project_id", "install_components", "skip_install", "cache"},
    # pulumi/actions v7.0.0 (its action.yml); note `policyPacks`, not `policy-packs`.
    "pulumi/actions": {
        "command",
        "stack-name",
        "work-dir",
        "cloud-url",
        "pulumi-version",
        "comment-on-pr",
        "comment-on-pr-number",
        "comment-on-summary",
        "edit-pr-comment",
        "diff",
        "policyPacks",
        "policyPackConfigs",
        "refresh",
        "upsert",
        "secrets-provider",
        "expect-no-changes",
        "suppress-outputs",
    },
}
PINNED_USES = re.compile(r"^\s*(?:-\s+)?uses:\s*([\w.-]+/[\w./-]+)@(\S+)(.*)$")


def load(name: str) -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return document


def triggers(workflow: dict[Any, Any]) -> Any:
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean True.
    return workflow["on"] if "on" in workflow else workflow[True]


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if str(step.get("uses", "")).split("@")[0] == action]


def only_step(job: dict[str, Any], action: str) -> dict[str, Any]:
    steps = steps_using(job, action)
    assert len(steps) == 1, f"expected one {action} step, found {len(steps)}"
    return steps[0]


def strings(value: Any) -> list[str]:
    """Every string in a parsed YAML value, keys included."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return [value] if isinstance(value, str) else []


def check_jsonschema(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def all_workflows() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def test_workflows_match_githubs_schema() -> None:
    files = all_workflows()
    assert {f.name for f in files} >= {"pull-request.yml", "deploy.yml"}
    result = check_jsonschema(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    # `runs_on` for `runs-on`, and a permission level GitHub does not know.
    (tmp_path / "typo.yml").write_text(
        "on: push\njobs:\n  build:\n    runs_on: ubuntu-latest\n    steps:\n      - run: make\n"
    )
    (tmp_path / "level.yml").write_text(
        "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    permissions:\n      id-token: admin\n"
        "    steps:\n      - run: make\n"
    )
    result = check_jsonschema(tmp_path / "typo.yml", tmp_path / "level.yml")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "typo.yml" in result.stdout and "level.yml" in result.stdout, result.stdout


def test_every_job_has_a_timeout_and_least_privilege() -> None:
    for path in all_workflows():
        workflow = load(path.name)
        assert workflow["permissions"] == {}, f"{path.name}: no default token permissions; jobs ask for theirs"
        for name, job in workflow["jobs"].items():
            assert "timeout-minutes" in job, f"{path.name}: job {name} has no timeout-minutes"
            assert "permissions" in job, f"{path.name}: job {name} does not say which token permissions it needs"


def test_offline_job_uses_no_secrets_and_reviews_every_stack() -> None:
    workflow = load("pull-request.yml")
    assert "pull_request" in triggers(workflow)
    assert "pull_request_target" not in triggers(workflow), "a fork's code must never run with this repository's token"
    job = workflow["jobs"]["offline"]
    assert not [s for s in strings(job) if "secrets." in s], "the offline job runs on forks: it must need no secrets"
    assert "id-token" not in job["permissions"]
    assert only_step(job, "actions/checkout")["with"]["fetch-depth"] == 0, "the review needs the base branch"
    assert only_step(job, "actions/setup-python")["with"]["python-version"] == "3.11"
    assert any(step.get("run") == "make test" for step in job["steps"])

    review = next(step for step in job["steps"] if "llm-mesh review" in step.get("run", ""))
    assert "--stack" not in review["run"]  # every stack at either ref, a new or removed one included
    assert '--base "origin/$BASE_REF"' in review["run"] and review["env"]["BASE_REF"] == "${{ github.base_ref }}"
    assert "--out review.md" in review["run"]


def test_review_comment_is_updated_in_place_and_the_status_kept() -> None:
    job = load("pull-request.yml")["jobs"]["offline"]
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    steps = job["steps"]
    review = next(i for i, step in enumerate(steps) if step.get("id") == "review")
    comment = steps.index(only_step(job, "actions/github-script"))
    fail = next(i for i, step in enumerate(steps) if "steps.review.outputs.status" in step.get("if", ""))
    assert review < comment < fail, "the comment is posted before the job fails on the review's status"
    assert "set +e" in steps[review]["run"] and '"$GITHUB_OUTPUT"' in steps[review]["run"]
    assert 'exit "$STATUS"' in steps[fail]["run"]

    script = steps[comment]["with"]["script"]
    assert MARKER in script
    for call in ("github.paginate(github.rest.issues.listComments", "updateComment", "createComment"):
        assert call in script
    assert "${{" not in script, "expressions in a script are injected as code: pass values through env"
    # A fork's token is read-only: post only from this repository's branches, and always leave the report.
    assert "github.event.pull_request.head.repo.full_name == github.repository" in steps[comment]["if"]
    artifact = only_step(job, "actions/upload-artifact")
    assert artifact["with"]["path"] == "review.md" and "head.repo" not in artifact.get("if", "")
    assert any("$GITHUB_STEP_SUMMARY" in step.get("run", "") for step in steps)


def test_cloud_previews_every_stack_only_when_credentials_can_exist() -> None:
    job = load("pull-request.yml")["jobs"]["cloud"]
    assert "vars.GCP_WORKLOAD_IDENTITY_PROVIDER != ''" in job["if"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"]
    assert job["strategy"]["matrix"]["stack"] == STACKS
    assert job["permissions"]["pull-requests"] == "write"
    preview = only_step(job, "pulumi/actions")["with"]
    assert preview["command"] == "preview" and preview["stack-name"] == "${{ matrix.stack }}"
    assert preview["comment-on-pr"] is True and preview["diff"] is True
    assert preview["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"


def test_main_deploys_dev_then_staging_then_prod_behind_environments() -> None:
    workflow = load("deploy.yml")
    assert triggers(workflow) == {"push": {"branches": ["main"]}}
    jobs = workflow["jobs"]
    deploys = [name for name, job in jobs.items() if steps_using(job, "pulumi/actions")]
    assert deploys == STACKS
    assert jobs["dev"]["needs"] == "test" and any(s.get("run") == "make test" for s in jobs["test"]["steps"])
    for previous, stack in pairwise(STACKS):
        assert jobs[stack]["needs"] == previous
    for stack in STACKS:
        job = jobs[stack]
        assert job["environment"] == stack
        assert job["concurrency"] == {"group": f"pulumi-up-{stack}", "cancel-in-progress": False}
        up = only_step(job, "pulumi/actions")["with"]
        assert up["command"] == "up" and up["stack-name"] == stack
        assert (ROOT / "stacks" / f"Pulumi.{stack}.yaml").is_file()


@pytest.mark.parametrize("name", ["pull-request.yml", "deploy.yml"])
def test_pulumi_runs_the_policy_pack_with_the_sdks_cli(name: str) -> None:
    sdk = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements" / "program.in").read_text(), re.MULTILINE)
    assert sdk
    for job in load(name)["jobs"].values():
        for step in steps_using(job, "pulumi/actions"):
            assert step["with"]["policyPacks"] == "policies"
            assert (ROOT / "policies" / "PulumiPolicy.yaml").is_file()
            assert str(step["with"]["pulumi-version"]) == sdk.group(1)


def test_google_credentials_come_from_workload_identity_federation() -> None:
    authenticated = 0
    for path in all_workflows():
        for name, job in load(path.name)["jobs"].items():
            for step in steps_using(job, "google-github-actions/auth"):
                authenticated += 1
                assert job["permissions"].get("id-token") == "write", f"{path.name}: job {name}"
                assert step["with"]["workload_identity_provider"].startswith("${{ vars.")
                assert "credentials_json" not in step["with"], f"{path.name}: job {name} uses a service-account key"
            if steps_using(job, "pulumi/actions"):
                auth = [i for i, s in enumerate(job["steps"]) if s in steps_using(job, "google-github-actions/auth")]
                pulumi = job["steps"].index(only_step(job, "pulumi/actions"))
                assert auth and auth[0] < pulumi, f"{path.name}: job {name} runs Pulumi before authenticating"
                # The kubeconfig's user is gke-gcloud-auth-plugin: installed after auth, so it runs as that account.
                [plugin] = steps_using(job, "google-github-actions/setup-gcloud")
                assert "gke-gcloud-auth-plugin" in plugin["with"]["install_components"].split(",")
                assert auth[0] < job["steps"].index(plugin) < pulumi, f"{path.name}: job {name}"
    assert authenticated == 4  # the preview matrix, dev, staging, prod
    for path in all_workflows():
        text = path.read_text()
        assert "GOOGLE_CREDENTIALS" not in text and "credentials_json" not in text


def test_actions_are_pinned_by_commit_and_take_known_inputs() -> None:
    pins: dict[str, set[str]] = {}
    for path in all_workflows():
        for line in path.read_text().splitlines():
            match = PINNED_USES.match(line)
            if not match:
                continue
            action, ref, comment = match.groups()
            assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{path.name}: {action}@{ref} is not pinned by commit SHA"
            assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", comment), f"{path.name}: {action}: name the release pinned"
            pins.setdefault(action, set()).add(ref)
        for job in load(path.name)["jobs"].values():
            for step in job["steps"]:
                if "uses" in step:
                    action = step["uses"].split("@")[0]
                    assert action in ACTION_INPUTS, f"{path.name}: {action} is not reviewed here"
                    assert set(step.get("with", {})) <= ACTION_INPUTS[action], f"{path.name}: {action}"
    assert set(pins) == set(ACTION_INPUTS)
    assert all(len(refs) == 1 for refs in pins.values()), f"one pin per action: {pins}"


def test_zizmor_finds_nothing_in_the_workflows() -> None:
    """zizmor's offline audits (template injection, excessive permissions, credential persistence, unpinned
    uses...): no finding but those suppressed inline with their reason."""
    zizmor = Path(sys.executable).with_name("zizmor")
    result = subprocess.run(
        [str(zizmor), "--offline", "--format", "plain", "--no-progress", str(WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout + result.stderr
