"""A canary step shown, not applied: the step made on a copy of the stack files, and the stack previewed offline
before and after it. What `pulumi up` would change, with nothing written to the project."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Literal

from llm_mesh.engine.stackfile import Project
from llm_mesh.errors import InputError
from llm_mesh.ops import canary
from llm_mesh.ops.diff import diff, states, text_report
from llm_mesh.ops.review import collect, start_previews

Step = Literal["advance", "rollback", "promote"]


def dry_run(project: Project, stack: str, model: str, step: Step, weight: int) -> str:
    """The text diff of the step (`weight` is where `advance` takes the canary)."""
    with tempfile.TemporaryDirectory(prefix="llm-mesh-canary-") as scratch:
        copy = _stack_files_copy(project, Path(scratch) / "project")
        if step == "advance":
            canary.set_weight(copy, stack, model, weight)
        elif step == "rollback":
            canary.set_weight(copy, stack, model, 0)
        else:
            canary.make_canary_stable(copy, stack, model)
            canary.remove_canary(copy, stack, model)
        before = start_previews(project.root, [stack], Path(scratch) / "before")
        after = start_previews(copy.root, [stack], Path(scratch) / "after")
        sides = collect(before, Path(scratch) / "before", [stack]), collect(after, Path(scratch) / "after", [stack])
    for side in sides:
        if stack in side.errors:
            raise InputError(f"the dry run's preview failed: {side.errors[stack][0]}")
    base, head = states(sides[0].documents[stack]), states(sides[1].documents[stack])
    return text_report(diff(base, head), base, head)


def _stack_files_copy(project: Project, root: Path) -> Project:
    """The project at `root`: its stack files copied (they are what a step edits), everything else linked."""
    root.mkdir()
    for entry in project.root.iterdir():
        if entry.name in (".git", ".venv", project.stack_config_dir.name):
            continue
        (root / entry.name).symlink_to(entry)
    stack_dir = root / project.stack_config_dir.relative_to(project.root)
    shutil.copytree(project.stack_config_dir, stack_dir)
    return Project(root, project.name, stack_dir)
