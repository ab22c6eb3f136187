"""`llm-mesh review`: what a pull request changes in each stack, previewed offline at both refs.

The base ref is checked out into a temporary git worktree (removed afterwards; the user's work tree is never
touched) and previewed with its own program; the head is the working tree. Each side previews all its stacks
in one process, and the two run side by side. The policy pack runs on the head.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_mesh.errors import InputError
from llm_mesh.ops.capacity import Capacity, Prices, capacity_line
from llm_mesh.ops.diff import Diff, State, diff, states, text_report
from llm_mesh.words import count

BATCH = Path(__file__).with_name("preview_batch.py")
MARKER = "<!-- llm-mesh-review -->"


@dataclass
class Side:
    """One ref's previews: a document per stack, or the lines saying why there is none."""

    documents: dict[str, dict[str, Any]]
    errors: dict[str, list[str]]


@contextmanager
def worktree(repo: Path, ref: str) -> Iterator[Path]:
    """`ref` checked out in a temporary folder, removed afterwards whatever happens."""
    resolved = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if resolved.returncode != 0:
        raise InputError(f"--base {ref}: no such commit in {repo}; name a branch, tag or commit (e.g. origin/main)")
    with tempfile.TemporaryDirectory(prefix="llm-mesh-review-") as parent:
        folder = Path(parent) / "base"
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet", str(folder), resolved.stdout.strip()],
            check=True,
            capture_output=True,
        )
        try:
            yield folder
        finally:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(folder)], capture_output=True)


def start_previews(project_dir: Path, stacks: list[str], out: Path) -> subprocess.Popen[str]:
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(BATCH), str(project_dir), str(out), *stacks],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def collect(process: subprocess.Popen[str], out: Path, stacks: list[str]) -> Side:
    _, stderr = process.communicate()
    side = Side({}, {})
    for stack in stacks:
        document, error = out / f"{stack}.json", out / f"{stack}.error"
        if document.is_file():
            side.documents[stack] = json.loads(document.read_text())
        elif error.is_file():
            side.errors[stack] = error.read_text().splitlines()
        else:
            last = (stderr.strip().splitlines() or ["no output"])[-1]
            side.errors[stack] = [f"the preview did not finish: {last}"]
    return side


def preview_both(repo: Path, project: Path, base_ref: str, stacks: list[str]) -> tuple[Side, Side]:
    """Both refs previewed at once, each in one process for all its stacks."""
    relative = project.resolve().relative_to(repo.resolve())
    with tempfile.TemporaryDirectory(prefix="llm-mesh-previews-") as scratch, worktree(repo, base_ref) as base_tree:
        base_out, head_out = Path(scratch) / "base", Path(scratch) / "head"
        started: list[subprocess.Popen[str]] = []
        try:
            started.append(base := start_previews(base_tree / relative, stacks, base_out))
            started.append(head := start_previews(project, stacks, head_out))
            return collect(base, base_out, stacks), collect(head, head_out, stacks)
        finally:
            # Interrupted (Ctrl-C, SIGTERM): no preview goes on writing into folders about to be removed.
            for process in started:
                if process.poll() is None:
                    process.kill()
                    process.wait()


@dataclass
class StackReview:
    stack: str
    diff: Diff | None
    base: dict[str, State]
    head: dict[str, State]
    base_error: list[str]
    head_error: list[str]
    capacity: str
    policy: Any  # PolicyReport of the head, or None when the head did not preview


def review_stack(
    stack: str, base: Side, head: Side, prices: Prices, policies: Any, run_policies: Any, environment: str | None = None
) -> StackReview:
    """One stack's changes, capacity and (on the head) policy result; `environment` from the head's stack config,
    so that a stack named anything (a copy of dev called `mine`) is judged as what it is."""
    base_states = states(base.documents[stack]) if stack in base.documents else {}
    head_states = states(head.documents[stack]) if stack in head.documents else {}
    changed = diff(base_states, head_states) if stack in head.documents else None
    report = None
    if stack in head.documents:
        from llm_mesh.engine.readers import read_document

        report = run_policies(policies, read_document(head.documents[stack]), {}, environment, True)
    line = capacity_line(Capacity.of(base_states), Capacity.of(head_states), prices)
    return StackReview(
        stack, changed, base_states, head_states, base.errors.get(stack, []), head.errors.get(stack, []), line, report
    )


def markdown(reviews: list[StackReview], base_ref: str) -> str:
    lines = [MARKER, f"## llm-mesh review against `{base_ref}`", ""]
    lines.append("| stack | + create | ~ update | +- replace | - delete | unchanged | policy |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in reviews:
        if r.diff is None:
            lines.append(f"| {r.stack} | | | | | | preview failed |")
            continue
        counts = r.diff.counts()
        lines.append(
            f"| {r.stack} | {counts['create']} | {counts['update']} | {counts['replace']} | {counts['delete']} | "
            f"{r.diff.unchanged} | {_policy_cell(r.policy)} |"
        )
    lines.append("")
    for r in reviews:
        lines.append(f"### {r.stack}")
        if r.head_error:
            lines.append("The head does not preview:")
            lines += [f"    {line}" for line in r.head_error]
            lines.append("")
            continue
        if r.base_error and "no such stack file" in r.base_error[0]:
            lines.append(f"A new stack: not at `{base_ref}`; everything below is created.")
        elif r.base_error:
            lines.append(f"The base does not preview, so it is compared with nothing: {r.base_error[0]}")
        assert r.diff is not None
        lines.append(r.capacity)
        lines.append("")
        if r.diff.changes:
            lines.append(f"<details><summary>{r.diff.summary()}</summary>")
            lines.append("")
            lines.append(text_report(r.diff, r.base, r.head, markdown=True))
            lines.append("")
            lines.append("</details>")
        else:
            lines.append(f"No change. {r.diff.summary()}")
        lines.append("")
        lines += _policy_lines(r.policy)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


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
    """The head violates a mandatory policy, or does not preview at all."""
    return any(r.head_error or (r.policy is not None and r.policy.mandatory_violations) for r in reviews)
