"""`llm-mesh review` on what goes wrong in real pull requests: a stack that does not preview at one ref, a stack
removed or added, a stale worktree, a shallow clone, an --out path that would become a stack file. Each runs on
a throwaway git repository holding a copy of the project."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from llm_mesh.ops.review import one_level_lower, promotion_order, stacks_to_review
from tests.conftest import FIXTURE_STACKS, ROOT, Cli
from tests.git_repos import WHO, git, project_repo

WORKFLOWS = ROOT / ".github" / "workflows"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} no longer holds {old!r}"
    path.write_text(text.replace(old, new))


def rows(report: str) -> list[list[str]]:
    """The summary table's rows, cell by cell."""
    table = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| stack |")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table]


def section(report: str, stack: str) -> list[str]:
    lines = report.splitlines()
    start = lines.index(f"### {stack}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("### ")), len(lines))
    return lines[start:end]


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "canaryWeight: 10",
            "canaryWeight: 200",
            "`llm-mesh:models[0].canaryWeight = 200: must be between 0 and 100",
        ),
        ("  llm-mesh:environment: staging\n", "  llm-mesh:environment: [staging\n", "not valid YAML"),
    ],
    ids=["config-mistake", "yaml-syntax"],
)
def test_a_head_that_does_not_preview_is_a_row_of_the_report(
    cli: Cli, tmp_path: Path, old: str, new: str, problem: str
) -> None:
    """The reviewer sees the mistake in the PR comment; the review fails (exit 1) after writing it."""
    repo = project_repo(tmp_path)
    edit(repo / "stacks" / "Pulumi.staging.yaml", old, new)
    out = tmp_path / "review.md"
    result = cli("--project", str(repo), "review", "--base", "HEAD", "--stack", "staging", "--out", str(out))
    assert (result.returncode, result.stderr) == (1, "")
    assert out.read_text() == result.stdout
    assert rows(result.stdout) == [["staging", "head does not preview", "", "", "", "", "not run"]]
    (said,) = [line for line in section(result.stdout, "staging") if line]
    assert said.startswith("The head does not preview: `") and problem in said
    assert "Error:" not in said, "the problem as the user reads it, not an exception's class"
    assert "/tmp" not in said and str(repo) not in said, "the file is named as the reviewer knows it"


def test_a_base_that_does_not_preview_is_compared_with_nothing(cli: Cli, tmp_path: Path) -> None:
    """A PR that repairs a broken stack: the head's capacity alone, no wall of `create`, and the PR passes.
    A stack named twice is one row."""
    repo = project_repo(tmp_path)
    staging = repo / "stacks" / "Pulumi.staging.yaml"
    edit(staging, "canaryWeight: 10", "canaryWeight: 200")
    git(repo, *WHO, "commit", "--quiet", "-am", "a mistake")
    edit(staging, "canaryWeight: 200", "canaryWeight: 10")
    result = cli("--project", str(repo), "review", "--base", "HEAD", "--stack", "staging", "--stack", "staging")
    assert (result.returncode, result.stderr) == (0, "")
    assert rows(result.stdout) == [["staging", "base does not preview", "", "", "", "", "pass"]]
    said = section(result.stdout, "staging")
    assert said[0].startswith("The base does not preview, so nothing is compared: `llm-mesh:models[0].canaryWeight")
    (capacity,) = [line for line in said if line.startswith("GPUs ")]
    assert "→" not in capacity and not capacity.startswith("GPUs 0–0"), "the head's capacity, not 0 → head"
    assert not [line for line in said if "(create)" in line]


def test_stacks_removed_and_added_at_head_are_reviewed_in_promotion_order(cli: Cli, tmp_path: Path) -> None:
    """Default: every stack of either ref. `mine`, a copy of dev, goes with dev; staging, removed, keeps its place.
    The diff's component headings sit one level under the stack headings."""
    repo = project_repo(tmp_path)
    git(repo, "rm", "--quiet", "stacks/Pulumi.staging.yaml")
    shutil.copy(repo / "stacks" / "Pulumi.dev.yaml", repo / "stacks" / "Pulumi.mine.yaml")
    result = cli("--project", str(repo), "review", "--base", "HEAD")
    assert (result.returncode, result.stderr) == (0, "")
    table = rows(result.stdout)
    assert [row[0] for row in table] == ["dev", "mine (new at head)", "staging", "prod"]
    assert table[2] == ["staging", "removed at head", "", "", "", "", ""]
    assert table[1][2:6] == ["0", "0", "0", "0"] and table[1][6] == "pass"
    assert section(result.stdout, "staging")[0].startswith("Removed at head: the stack file is at `HEAD`")
    assert section(result.stdout, "mine")[0] == "New at head: not at `HEAD`; everything below is created."
    headings = [line for line in result.stdout.splitlines() if line.startswith("#")]
    assert [h for h in headings if h.startswith("### ")] == ["### dev", "### mine", "### staging", "### prod"]
    assert "#### (stack)" in headings and "#### llm-mesh:cluster:GpuCluster gpu" in headings


def test_a_review_prunes_what_a_killed_review_left_and_nothing_else(cli: Cli, tmp_path: Path) -> None:
    """A worktree whose folder is gone (a SIGKILLed review, its /tmp cleaned) is forgotten; anyone's live
    worktree stays."""
    repo = project_repo(tmp_path)
    gone, live = tmp_path / "gone", tmp_path / "live"
    git(repo, "worktree", "add", "--detach", "--quiet", str(gone), "HEAD")
    git(repo, "worktree", "add", "--detach", "--quiet", str(live), "HEAD")
    shutil.rmtree(gone)
    result = cli("--project", str(repo), "review", "--base", "HEAD", "--stack", "dev")
    assert result.returncode == 0, result.stdout + result.stderr
    listed = [line.split()[0] for line in git(repo, "worktree", "list").splitlines()]
    assert listed == [str(repo), str(live)]


def test_a_shallow_clone_says_to_fetch_the_base(cli: Cli, tmp_path: Path) -> None:
    repo = project_repo(tmp_path)
    git(repo, *WHO, "commit", "--quiet", "--allow-empty", "-m", "head")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--depth=1", f"file://{repo}", str(clone)], check=True)
    result = cli("--project", str(clone), "review", "--base", "HEAD~1")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        f"error: --base HEAD~1: no such commit in {clone}; name a branch, tag or commit (e.g. origin/main); this "
        "clone is shallow: fetch the history first (`git fetch --unshallow`, or `fetch-depth: 0` in actions/checkout)"
    ]


@pytest.mark.parametrize(
    ("out", "says"),
    [
        ("stacks/Pulumi.x.yaml", "named like a Pulumi project or stack file; name it e.g. review.md"),
        ("elsewhere/Pulumi.x.yml", "named like a Pulumi project or stack file; name it e.g. review.md"),
        ("stacks/review.md", "in the stack config folder stacks; write the report outside it, e.g. --out review.md"),
    ],
)
def test_out_is_never_where_pulumi_reads_stack_files(cli: Cli, tmp_path: Path, out: str, says: str) -> None:
    """Refused before anything runs (this copy is not even a git repository)."""
    project = tmp_path / "project"
    (project / "elsewhere").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", project)
    shutil.copytree(FIXTURE_STACKS, project / "stacks", ignore=shutil.ignore_patterns("README.md"))
    result = cli("review", "--base", "HEAD", "--out", out, cwd=project)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: --out {out}: {says}"]
    assert not (project / out).exists()


def test_stacks_are_named_once_and_promoted_dev_staging_prod() -> None:
    assert stacks_to_review(["prod", "dev", "prod"], ["dev"], ["dev", "prod"]) == ["prod", "dev"]
    assert stacks_to_review(None, ["dev", "old"], ["dev", "new"]) == ["dev", "new", "old"]
    environments = {"prod": "prod", "a-prod-copy": "prod", "mine": "dev", "dev": "dev", "staging": None}
    assert promotion_order(["prod", "a-prod-copy", "zz", "staging", "mine", "dev", "prod"], environments) == [
        "dev",
        "mine",
        "staging",  # its file does not read: placed by its name
        "a-prod-copy",
        "prod",
        "zz",  # no environment known at all: last
    ]


def test_component_headings_go_one_level_down() -> None:
    text = "### (stack)\n- + a (create)\n      ### not a heading (indented, in a fenced diff)\n### gpu\n"
    assert (
        one_level_lower(text)
        == "#### (stack)\n- + a (create)\n      ### not a heading (indented, in a fenced diff)\n#### gpu\n"
    )


def test_the_pull_request_review_covers_every_stack_with_the_history_it_needs() -> None:
    """No hard-coded --stack: a stack added or removed by the PR is reviewed too."""
    job = yaml.safe_load((WORKFLOWS / "pull-request.yml").read_text())["jobs"]["offline"]
    review = next(step for step in job["steps"] if "llm-mesh review" in step.get("run", ""))
    assert "--stack" not in review["run"]
    (checkout,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert checkout["with"]["fetch-depth"] == 0, "--base needs the base branch's history"


def test_one_workload_identity_provider_serves_previews_and_deploys() -> None:
    """The provider admits the repository (the preview job has no `environment` claim); the bindings say which
    job may become which account."""
    deploy, pull_request = (WORKFLOWS / "deploy.yml").read_text(), (WORKFLOWS / "pull-request.yml").read_text()
    assert "assertion.repository == 'OWNER/REPO'" in deploy
    assert "attribute.environment=assertion.environment" in deploy and "attribute.environment/ENV" in deploy
    assert "attribute.event_name=assertion.event_name" in deploy
    assert "attribute.event_name/pull_request" in pull_request
    assert "only this repository's `environment` claims" not in deploy


def test_an_interruption_while_git_adds_the_worktree_leaves_no_registration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C or SIGTERM arriving just as `git worktree add` returns: the worktree is registered by then, and
    must be removed and forgotten all the same."""
    from llm_mesh.ops import review

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "file").write_text("x\n")
    git(repo, "add", "file")
    git(repo, *WHO, "commit", "--quiet", "-m", "one")
    real_run = subprocess.run

    def interrupted_after_add(args: list[str], **kwargs: object) -> object:
        done = real_run(args, **kwargs)  # type: ignore[call-overload]
        if "add" in args:
            raise KeyboardInterrupt
        return done

    monkeypatch.setattr(review.subprocess, "run", interrupted_after_add)
    with pytest.raises(KeyboardInterrupt), review.worktree(repo, "HEAD"):
        pass
    monkeypatch.undo()
    assert len(git(repo, "worktree", "list").strip().splitlines()) == 1


def test_the_switch_to_inference_pools_reviews_as_new_objects_and_no_replacement(cli: Cli, tmp_path: Path) -> None:
    """One key in a pull request: the review lists what the inference-pool path adds and what it changes, replaces
    and deletes nothing, and passes the policy pack."""
    repo = project_repo(tmp_path)
    served_name = "      servedName: meta-llama/Llama-3.1-8B-Instruct\n"
    edit(
        repo / "stacks" / "Pulumi.staging.yaml",
        served_name,
        served_name + "      routing: {balancing: inference-pool}\n",
    )
    result = cli("--project", str(repo), "review", "--base", "HEAD", "--stack", "staging")
    assert result.returncode == 0, result.stdout + result.stderr
    ((stack, created, updated, replaced, deleted, _, policy),) = rows(result.stdout)
    assert (stack, replaced, deleted, policy) == ("staging", "0", "0", "pass")
    assert int(created) > 0 and int(updated) > 0
    said = "\n".join(section(result.stdout, "staging"))
    for new in ("gateway.networking.k8s.io/v1:HTTPRoute inference-llama-31-8b (create)",
                "inference.networking.k8s.io/v1:InferencePool inference-llama-31-8b-stable (create)",
                "apps/v1:Deployment inference-routing-llama-31-8b-stable-deployment (create)"):  # fmt: skip
        assert new in said
    assert "`values.pilot.env.ENABLE_GATEWAY_API_INFERENCE_EXTENSION: (none) → true`" in said
