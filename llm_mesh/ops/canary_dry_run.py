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
    """The text diff of each `pulumi up` the step runs, in order (`weight` is where `advance` takes the canary):
    one for `advance` and `rollback`, two for `promote` (stable takes the canary's version, then the canary
    goes). Each is previewed offline as the engine would take it: a duplicate URN fails its preview, and a name
    still held by an object deleted in the same update is flagged."""
    edits = {
        "advance": [(f"weight {weight}%", lambda copy: canary.set_weight(copy, stack, model, weight))],
        "rollback": [("weight 0%", lambda copy: canary.set_weight(copy, stack, model, 0))],
        "promote": [
            ("the canary's version becomes stable", lambda copy: canary.make_canary_stable(copy, stack, model)),
            ("the canary is removed", lambda copy: canary.remove_canary(copy, stack, model)),
        ],
    }[step]
    with tempfile.TemporaryDirectory(prefix="llm-mesh-canary-") as scratch:
        roots = [project.root]
        for i in range(len(edits)):
            copy = _stack_files_copy(project, Path(scratch) / f"up-{i + 1}")
            for _, edit in edits[: i + 1]:
                edit(copy)
            roots.append(copy.root)
        runs = [(root, Path(scratch) / f"preview-{i}") for i, root in enumerate(roots)]
        started = [start_previews(root, [stack], out) for root, out in runs]
        sides = [collect(previews, out, [stack]) for previews, (_, out) in zip(started, runs, strict=True)]
    for (_, out), side in zip(runs, sides, strict=True):
        if stack in side.errors:
            state = "as it is" if out.name == "preview-0" else f"after {edits[int(out.name[-1]) - 1][0]}"
            raise InputError(f"the dry run's preview of the stack {state} failed: {side.errors[stack][0]}")
    documents = [states(side.documents[stack]) for side in sides]
    reports = []
    for i, (message, _) in enumerate(edits):
        base, head = documents[i], documents[i + 1]
        heading = f"pulumi up {i + 1} of {len(edits)}: {message}" if len(edits) > 1 else ""
        reports.append("\n".join(filter(None, [heading, text_report(diff(base, head), base, head)])))
    return "\n\n".join(reports)


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
