"""`llm-mesh review`: what a pull request changes in each stack, previewed offline at both refs.

The base ref is checked out into a temporary git worktree (removed afterwards; the user's work tree is never
touched) and previewed with its own program; the head is the working tree. Each side previews all its stacks
in one process, and the two run side by side. The policy pack runs on the head.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_mesh.engine.stackfile import Project, read_stack_settings
from llm_mesh.errors import InputError
from llm_mesh.ops.capacity import Capacity, Prices, capacity_line
from llm_mesh.ops.diff import Diff, State, diff, states, text_report
from llm_mesh.plan.config import NAMESPACE, StackConfig
from llm_mesh.words import count

BATCH = Path(__file__).with_name("preview_batch.py")
MARKER = "<!-- llm-mesh-review -->"
PROMOTION = ("dev", "staging", "prod")
SHALLOW_HINT = (
    "this clone is shallow: fetch the history first (`git fetch --unshallow`, or `fetch-depth: 0` in actions/checkout)"
)


@dataclass
class Side:
    """One ref's previews: a document per stack, or the lines saying why there is none; the stacks that ref has
    a file for, and each one's configured environment (None where the file cannot be read)."""

    documents: dict[str, dict[str, Any]]
    errors: dict[str, list[str]]
    stacks: list[str] = field(default_factory=list)
    environments: dict[str, str | None] = field(default_factory=dict)


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


@contextmanager
def worktree(repo: Path, ref: str) -> Iterator[Path]:
    """`ref` checked out in a temporary folder, removed afterwards whatever happens."""
    # A review killed outright (SIGKILL, a lost runner) leaves its registration; once its folder is gone too,
    # prune forgets it. Worktrees whose folders exist (anyone's) are left alone.
    _git(repo, "worktree", "prune")
    resolved = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if resolved.returncode != 0:
        example = "origin/main" if ref != "origin/main" else "main"
        message = f"--base {ref}: no such commit in {repo}; name a branch, tag or commit (e.g. {example})"
        if _git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true":
            message += f"; {SHALLOW_HINT}"
        raise InputError(message)
    with tempfile.TemporaryDirectory(prefix="llm-mesh-review-") as parent:
        folder = Path(parent) / "base"
        try:
            # Inside the try: an interruption while git is still adding it must not leave its registration.
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(repo),
                    "worktree",
                    "add",
                    "--detach",
                    "--quiet",
                    str(folder),
                    resolved.stdout.strip(),
                ],
                check=True,
                capture_output=True,
            )
            yield folder
        finally:
            _git(repo, "worktree", "remove", "--force", str(folder))
            shutil.rmtree(folder, ignore_errors=True)
            _git(repo, "worktree", "prune")  # a registration half made, or left by a remove that failed


def start_previews(project_dir: Path, stacks: list[str], out: Path) -> subprocess.Popen[str]:
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(BATCH), str(project_dir), str(out), *stacks],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def collect(process: subprocess.Popen[str], out: Path, stacks: list[str], project_dir: Path | None = None) -> Side:
    """Each stack's document or error lines; paths under `project_dir` (a temporary worktree, a runner's
    checkout) are shown relative to it, as a reviewer knows them."""
    _, stderr = process.communicate()
    side = Side({}, {})
    for stack in stacks:
        document, error = out / f"{stack}.json", out / f"{stack}.error"
        if document.is_file():
            side.documents[stack] = json.loads(document.read_text())
        elif error.is_file():
            lines = error.read_text().splitlines()
            side.errors[stack] = [_relative(line, project_dir) for line in lines] if project_dir else lines
        else:
            last = (stderr.strip().splitlines() or ["no output"])[-1]
            side.errors[stack] = [f"the preview did not finish: {last}"]
    return side


def _relative(line: str, folder: Path) -> str:
    for prefix in {f"{folder.absolute()}/", f"{folder.resolve()}/"}:
        line = line.replace(prefix, "")
    return line


def project_at(folder: Path, head: Project) -> Project:
    """The project as a checkout of another ref has it; where its Pulumi.yaml is malformed (its previews say
    so), the head's project name and stack folder."""
    try:
        return Project.find(folder)
    except InputError:
        return Project(folder, head.name, folder / head.stack_config_dir.relative_to(head.root))


def stacks_at(folder: Path, head: Project) -> list[str]:
    """The stacks a checkout has a file for; none where the project is not there yet."""
    return project_at(folder, head).stacks() if (folder / "Pulumi.yaml").is_file() else []


def configured_environment(project: Project, stack: str) -> str | None:
    """The stack's `llm-mesh:environment` as its file says it (the config's default when unset); None when the
    file cannot be read (its preview says why)."""
    try:
        config = read_stack_settings(project, stack).config
    except (InputError, OSError):
        return None
    default = StackConfig.model_fields["environment"].default
    return config.get(f"{NAMESPACE}:environment", default)


def stacks_to_review(asked: list[str] | None, at_base: Iterable[str], at_head: Iterable[str]) -> list[str]:
    """The stacks asked for, each once; by default every stack either ref has (one removed or added at head
    is reviewed as such, never silently left out)."""
    if asked:
        return list(dict.fromkeys(asked))
    return sorted({*at_base, *at_head})


def promotion_order(stacks: Iterable[str], environments: Mapping[str, str | None]) -> list[str]:
    """dev, staging, prod: the order a change is promoted in (by each stack's configured environment, so that a
    copy of dev called `mine` goes with dev), then by name; a stack whose environment is unknown goes by its
    name if that is an environment, otherwise last."""

    def key(stack: str) -> tuple[int, str]:
        environment = environments.get(stack) or stack
        return (PROMOTION.index(environment) if environment in PROMOTION else len(PROMOTION), stack)

    return sorted(dict.fromkeys(stacks), key=key)


def preview_both(repo: Path, project: Project, base_ref: str, asked: list[str] | None) -> tuple[list[str], Side, Side]:
    """The stacks to review, in promotion order, and both refs previewed at once, each in one process for the
    stacks it has."""
    head_dir = project.root.resolve()
    relative = head_dir.relative_to(repo.resolve())
    with tempfile.TemporaryDirectory(prefix="llm-mesh-previews-") as scratch, worktree(repo, base_ref) as base_tree:
        base_dir = base_tree.absolute() / relative
        at_base, at_head = stacks_at(base_dir, project), project.stacks()
        chosen = stacks_to_review(asked, at_base, at_head)
        for stack in chosen:
            if stack not in at_base and stack not in at_head:
                read_stack_settings(project, stack)  # raises: no such stack file, naming the stack meant
        sides = {
            "base": (base_dir, [s for s in chosen if s in at_base]),
            "head": (head_dir, [s for s in chosen if s in at_head]),
        }
        running: dict[str, subprocess.Popen[str]] = {}
        try:
            for name, (folder, stacks) in sides.items():
                if stacks:  # a ref without any of the stacks (a project added or removed) starts no process
                    running[name] = start_previews(folder, stacks, Path(scratch) / name)
            base_side, head_side = (
                collect(running[name], Path(scratch) / name, stacks, folder) if name in running else Side({}, {})
                for name, (folder, stacks) in sides.items()
            )
        finally:
            # Interrupted (Ctrl-C, SIGTERM): no preview goes on writing into folders about to be removed.
            for process in running.values():
                if process.poll() is None:
                    process.kill()
                    process.wait()
        base_side.stacks, head_side.stacks = sides["base"][1], sides["head"][1]
        base_project = project_at(base_dir, project)
        base_side.environments = {s: configured_environment(base_project, s) for s in base_side.stacks}
        head_side.environments = {s: configured_environment(project, s) for s in head_side.stacks}
    # The head says what a stack is now; a stack removed at head is placed by what it was.
    environments = {**base_side.environments, **{s: e for s, e in head_side.environments.items() if e}}
    return promotion_order(chosen, environments), base_side, head_side


@dataclass
class StackReview:
    stack: str
    at_base: bool
    at_head: bool
    diff: Diff | None  # None unless both sides previewed (or the stack is new and the head previewed)
    base: dict[str, State]
    head: dict[str, State]
    base_error: list[str]
    head_error: list[str]
    capacity: str
    policy: Any  # PolicyReport of the head, or None when the head did not preview


def review_stack(stack: str, base: Side, head: Side, prices: Prices, policies: Any, run_policies: Any) -> StackReview:
    """One stack's changes, capacity and (on the head) policy result, judged as the environment the head's stack
    file configures, so that a stack named anything (a copy of dev called `mine`) is judged as what it is."""
    at_base, at_head = stack in base.stacks, stack in head.stacks
    base_states = states(base.documents[stack]) if stack in base.documents else {}
    head_states = states(head.documents[stack]) if stack in head.documents else {}
    comparable = stack in head.documents and (stack in base.documents or not at_base)
    changed = diff(base_states, head_states) if comparable else None
    report = None
    if stack in head.documents:
        from llm_mesh.engine.readers import read_document

        report = run_policies(policies, read_document(head.documents[stack]), {}, head.environments.get(stack), True)
    if changed is not None and at_base:
        line = capacity_line(Capacity.of(base_states), Capacity.of(head_states), prices)
    elif stack in head.documents:
        # Nothing to compare with (a new stack, a base that does not preview): the head's capacity alone.
        after = Capacity.of(head_states)
        line = capacity_line(after, after, prices) if after.pools else "No GPU node pools."
    else:
        line = ""
    return StackReview(
        stack,
        at_base,
        at_head,
        changed,
        base_states,
        head_states,
        base.errors.get(stack, []),
        head.errors.get(stack, []),
        line,
        report,
    )


def markdown(reviews: list[StackReview], base_ref: str) -> str:
    lines = [MARKER, f"## llm-mesh review against `{base_ref}`", ""]
    lines.append("| stack | + create | ~ update | +- replace | - delete | unchanged | policy |")
    lines.append("|---|---|---|---|---|---|---|")
    lines += [_row(r) for r in reviews]
    lines.append("")
    for r in reviews:
        lines.append(f"### {r.stack}")
        if not r.at_head:
            lines.append(
                f"Removed at head: the stack file is at `{base_ref}`, not in the working tree. Removing it destroys nothing; "
                "`pulumi destroy` does, before `pulumi stack rm`."
            )
            lines.append("")
            continue
        if not r.at_base:
            lines += [f"New at head: not at `{base_ref}`; everything below is created.", ""]
        if r.head_error:
            lines += [*_problems("The head does not preview", r.head_error), ""]
            continue
        if r.base_error:
            lines += [*_problems("The base does not preview, so nothing is compared", r.base_error), ""]
        lines.append(r.capacity)
        lines.append("")
        if r.diff is None:
            lines.append(f"The head previews: {count(len(r.head), 'resource')}.")
        elif r.diff.changes:
            lines.append(f"<details><summary>{r.diff.summary()}</summary>")
            lines.append("")
            lines.append(one_level_lower(text_report(r.diff, r.base, r.head, markdown=True)))
            lines.append("")
            lines.append("</details>")
        else:
            lines.append(f"No change. {r.diff.summary()}")
        lines.append("")
        lines += _policy_lines(r.policy)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _row(r: StackReview) -> str:
    name = r.stack if r.at_base else f"{r.stack} (new at head)"
    if not r.at_head:
        return f"| {name} | removed at head | | | | | |"
    if r.head_error:
        return f"| {name} | head does not preview | | | | | not run |"
    if r.diff is None:
        return f"| {name} | base does not preview | | | | | {_policy_cell(r.policy)} |"
    counts = r.diff.counts()
    return (
        f"| {name} | {counts['create']} | {counts['update']} | {counts['replace']} | {counts['delete']} | "
        f"{r.diff.unchanged} | {_policy_cell(r.policy)} |"
    )


def one_level_lower(text: str) -> str:
    """Headings one level deeper: the diff's component headings sit under the report's stack headings."""
    return re.sub(r"^(#{1,5}) ", r"#\1 ", text, flags=re.MULTILINE)


def _problems(intro: str, problems: list[str]) -> list[str]:
    """`intro: problem`, or a list when there are several; as code, so that `*` or `_` in a config path is
    shown as written."""
    if len(problems) == 1:
        return [f"{intro}: {_code(problems[0])}"]
    return [f"{intro}:", *[f"- {_code(p)}" for p in problems]]


def _code(text: str) -> str:
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _policy_cell(report: Any) -> str:
    if report is None:
        return "not run"
    mandatory = len(report.mandatory_violations)
    return "pass" if not report.violations else f"{count(len(report.violations), 'violation')} ({mandatory} mandatory)"


def _policy_lines(report: Any) -> list[str]:
    if report is None:
        return []
    if not report.violations:
        return [f"Policy: {count(len(report.levels), 'rule')}, no violation."]
    lines = [f"Policy: {count(len(report.violations), 'violation')} of {count(len(report.levels), 'rule')}:"]
    for v in report.violations:
        lines.append(f"- **{v.policy}** ({v.level}) `{v.urn.rsplit('::', 1)[-1]}`: {v.message}")
    return lines


def failed(reviews: list[StackReview]) -> bool:
    """The head violates a mandatory policy, or a stack it has does not preview at all."""
    return any(
        (r.at_head and r.head_error) or (r.policy is not None and r.policy.mandatory_violations) for r in reviews
    )
