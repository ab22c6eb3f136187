"""The project a command works on, and a stack's config and offline run as the commands need them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from llm_mesh import cli
from llm_mesh.cli.exits import ProgramFailed, StackConfigInvalid, config_problems_of
from llm_mesh.cli.output import relative
from llm_mesh.engine.stackfile import Project, StackSettings, read_stack_settings

if TYPE_CHECKING:
    from llm_mesh.engine.readers import EngineResource
    from llm_mesh.engine.run import Recording
    from llm_mesh.plan.config import StackConfig


def project_of(given: Path | None, writes: bool = False) -> Project:
    """--project, or the project around the working folder, or else the one llm-mesh is installed in: said
    aloud, and not for a command that writes to a stack file or a cluster (those only where the user is)."""
    if given:
        return Project.find(given)
    try:
        return Project.find(Path.cwd())
    except FileNotFoundError:
        pass
    # Installed editable into the project's own .venv: the project is beside the package.
    installed = Project.find(Path(__file__).resolve().parents[2])
    if writes:
        raise FileNotFoundError(
            f"no Pulumi.yaml in {Path.cwd()} or any folder above it; run from the project, or give --project "
            f"(llm-mesh is installed from {relative(installed.root)})"
        )
    cli.err.print(f"note: no Pulumi.yaml here or above; using {installed.root}, where llm-mesh is installed")
    return installed


def stack_config(project: Project, stack: str) -> StackConfig:
    """The stack's validated config; a config mistake is reported with every problem."""
    from llm_mesh.plan.config import config_from_pulumi

    with config_problems_of(project.stack_file(stack)):
        return config_from_pulumi(read_stack_settings(project, stack).config)


def record(project: Project, stack: str) -> tuple[Recording, StackSettings]:
    """Run the stack's program offline; config mistakes and program failures are reported, not raised."""
    # Imported here: the SDK's runtime is heavy and only the commands that run the program need it.
    from llm_mesh.engine.run import run_program

    settings = read_stack_settings(project, stack)
    try:
        with config_problems_of(project.stack_file(stack)):
            return run_program(project, stack, settings), settings
    except StackConfigInvalid:
        raise
    except Exception as exc:
        if os.environ.get("LLM_MESH_DEBUG"):
            raise
        raise ProgramFailed(exc) from None


def offline_resources(project: Project, stack: str) -> tuple[list[EngineResource], StackConfig]:
    """Run the stack offline (as `preview` does) and read its document back, as any other document."""
    from llm_mesh.engine.document import preview_document
    from llm_mesh.engine.readers import read_document
    from llm_mesh.plan.config import config_from_pulumi

    recording, settings = record(project, stack)
    return read_document(preview_document(recording)), config_from_pulumi(settings.config)
