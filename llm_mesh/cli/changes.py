"""`diff` and `review`: what changes between two plans, from two documents or from two git refs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llm_mesh import cli
from llm_mesh.cli.exits import EXIT_FINDINGS
from llm_mesh.cli.output import OutputPathError, one_line, relative, writable
from llm_mesh.cli.registry import Command
from llm_mesh.cli.stacks import project_of
from llm_mesh.engine.stackfile import Project, is_pulumi_file
from llm_mesh.errors import InputError, read_problem


def _diff_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", type=Path, help="the document before")
    parser.add_argument("head", type=Path, help="the document after")
    parser.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    parser.add_argument(
        "--prices", type=Path, metavar="FILE", help="GPU node prices (default: the dated table shipped)"
    )


def _diff(args: argparse.Namespace) -> int:
    """Two documents; no project involved."""
    from llm_mesh.engine.readers import DocumentError
    from llm_mesh.ops.capacity import Capacity, Prices, as_json, capacity_line
    from llm_mesh.ops.diff import diff, json_report, restacked, stack_of, states, text_report

    base_path, head_path, fmt, prices_path = args.base, args.head, args.format, args.prices
    prices = Prices.load(prices_path)
    sides = []
    for path in (base_path, head_path):
        _not_a_stack_name_or_ref(path)
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise read_problem("engine document", path, exc) from None
        try:
            sides.append(states(document))
        except DocumentError as exc:
            raise DocumentError(f"engine document {path}: {exc}") from None
    base, head = sides
    base_stack, head_stack = stack_of(base), stack_of(head)
    note = ""
    if base_stack and head_stack and base_stack != head_stack:
        note = (
            f"note: {base_path} is stack {base_stack}, {head_path} is stack {head_stack}: "
            "resources matched by project, type and name"
        )
        head = restacked(head, head_stack, base_stack)
    result = diff(base, head)
    if fmt == "json":
        report = json_report(result)
        report["capacity"] = {"before": as_json(Capacity.of(base), prices), "after": as_json(Capacity.of(head), prices)}
        if note:
            report["note"] = note.removeprefix("note: ")
        print(json.dumps(report, indent=2))
        return 0
    if note:
        # In Markdown (a pull-request comment) the note belongs to the report; in text it is said aside.
        if fmt == "markdown":
            print(f"> {note}\n")
        else:
            cli.err.print(note, soft_wrap=one_line())
    print(text_report(result, base, head, markdown=fmt == "markdown"))
    print(capacity_line(Capacity.of(base), Capacity.of(head), prices))
    return 0


DIFF = Command(_diff_arguments, _diff)


def _not_a_stack_name_or_ref(path: Path) -> None:
    """`diff dev prod` or `diff origin/main HEAD`: a stack or a git ref where a document belongs."""
    if path.exists():
        if is_pulumi_file(path):
            raise InputError(
                f"engine document {path}: a Pulumi project or stack file, not a preview; write one with "
                "`llm-mesh preview --stack NAME --json FILE` and diff those"
            )
        return
    if not path.suffix:
        raise InputError(
            f"engine document {path}: no such file; diff takes two documents: write each stack's with "
            "`llm-mesh preview --stack NAME --json FILE`, or compare git refs with `llm-mesh review --base REF`"
        )


def _review_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, metavar="REF", help="the git ref to compare with (e.g. origin/main)")
    parser.add_argument("--stack", action="append", metavar="ENV", help="a stack to review (default: every stack)")
    parser.add_argument("--out", type=Path, metavar="FILE", help="also write the report to FILE")
    parser.add_argument(
        "--prices", type=Path, metavar="FILE", help="GPU node prices (default: the dated table shipped)"
    )


def _review(args: argparse.Namespace) -> int:
    import subprocess

    from llm_mesh_policies import POLICIES

    from llm_mesh.checks.policy_runner import run_policies
    from llm_mesh.ops.capacity import Prices
    from llm_mesh.ops.review import MARKER, failed, markdown, preview_both, review_stack

    project = project_of(args.project)
    base_ref, stacks, out_path = args.base, args.stack, args.out
    prices = Prices.load(args.prices)
    if out_path is not None:
        _not_a_stack_file(project, out_path)
        writable(out_path, "--out", lambda text: text.startswith(MARKER))
    top = subprocess.run(
        ["git", "-C", str(project.root), "rev-parse", "--show-toplevel"], capture_output=True, text=True
    )
    if top.returncode != 0:
        raise InputError(f"{project.root}: not in a git repository; review compares git refs")
    # A stack file that does not preview (a config mistake, bad YAML) is a row of the report, not an error here.
    chosen, base, head = preview_both(Path(top.stdout.strip()), project, base_ref, stacks)
    reviews = [review_stack(stack, base, head, prices, POLICIES, run_policies) for stack in chosen]
    report = markdown(reviews, base_ref)
    if out_path is not None:
        out_path.write_text(report)
    print(report, end="")
    return EXIT_FINDINGS if failed(reviews) else 0


REVIEW = Command(_review_arguments, _review)


def _not_a_stack_file(project: Project, path: Path) -> None:
    """The report never lands where Pulumi (and the next review) would read it as a stack's config."""
    if is_pulumi_file(path):
        raise OutputPathError(f"--out {path}: named like a Pulumi project or stack file; name it e.g. review.md")
    stack_dir = project.stack_config_dir.resolve()
    # stackConfigDir "." puts stack files beside everything else: then only the name says what a file is.
    if stack_dir != project.root.resolve() and path.resolve().is_relative_to(stack_dir):
        raise OutputPathError(
            f"--out {path}: in the stack config folder {relative(project.stack_config_dir)}; write the report "
            "outside it, e.g. --out review.md"
        )
