"""The commands by name: where each lives and what it is for. A command's module is imported, and its arguments
declared, only when that command runs (or shows its help), so `llm-mesh diff` never pays for the Pulumi SDK."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Command:
    """What a command module gives for each of its commands."""

    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class CommandInfo:
    module: str
    name: str  # of the Command in that module
    summary: str


# In the order `llm-mesh --help` lists them.
COMMANDS = {
    "preview": CommandInfo(
        "llm_mesh.cli.plan_commands", "PREVIEW", "run the program offline and show what `pulumi up` would create"
    ),
    "render": CommandInfo(
        "llm_mesh.cli.plan_commands", "RENDER", "write every Kubernetes object of a stack as YAML, with a kustomization"
    ),
    "validate": CommandInfo(
        "llm_mesh.cli.plan_commands",
        "VALIDATE",
        "check objects against Kubernetes and Istio schemas and mesh semantics",
    ),
    "policy": CommandInfo(
        "llm_mesh.cli.policy", "POLICY", "run the policy pack offline on a stack or on engine output files"
    ),
    "diff": CommandInfo(
        "llm_mesh.cli.changes",
        "DIFF",
        "what changes between two engine documents (offline previews, pulumi preview --json, stack export)",
    ),
    "review": CommandInfo(
        "llm_mesh.cli.changes",
        "REVIEW",
        "preview each stack at a git ref and at the working tree; a Markdown report for a pull request",
    ),
    "canary": CommandInfo(
        "llm_mesh.cli.canary", "CANARY", "move a canary step by step: each step a stack-file edit and a pulumi up"
    ),
    "models": CommandInfo("llm_mesh.cli.models", "MODELS", "operate on the model artifacts the stack serves"),
}


def command_named(argv: list[str]) -> str | None:
    """The command argv names: its first word that is neither an option nor --project's value."""
    words = iter(argv)
    for word in words:
        if word == "--":
            return next(words, None)
        if word.startswith("-"):
            # --project FOLDER, or any prefix of it that argparse would accept (--proj FOLDER).
            if len(word) > 2 and "--project".startswith(word):
                next(words, None)
            continue
        return word
    return None


def load(name: str) -> Command:
    info = COMMANDS[name]
    command = getattr(importlib.import_module(info.module), info.name)
    assert isinstance(command, Command), f"{info.module}.{info.name} is not a Command"
    return command


def parser(running: str | None) -> argparse.ArgumentParser:
    """The whole command line; only the command that runs has its arguments declared (and its module loaded)."""
    parser = argparse.ArgumentParser(prog="llm-mesh", description="Offline tools for the llm-mesh Pulumi stack.")
    parser.add_argument(
        "--project", type=Path, default=None, help="the Pulumi project folder (default: found from here)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, info in COMMANDS.items():
        sub = commands.add_parser(name, help=info.summary)
        # Also after the command (`llm-mesh validate --stack dev --project DIR`), where users put it; given
        # there, it wins; not given, the one before the command stands (SUPPRESS sets nothing).
        sub.add_argument("--project", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if name == running:
            load(name).arguments(sub)
    return parser
