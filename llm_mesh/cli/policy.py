"""`policy`: the policy pack run offline on a stack, or on engine documents."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text

from llm_mesh import cli
from llm_mesh.cli.exits import EXIT_FINDINGS
from llm_mesh.cli.output import one_line
from llm_mesh.cli.registry import Command
from llm_mesh.cli.stacks import offline_resources, project_of
from llm_mesh.errors import InputError, read_problem
from llm_mesh.words import count

if TYPE_CHECKING:
    from llm_mesh.checks.policy_runner import PolicyReport


def _arguments(parser: argparse.ArgumentParser) -> None:
    targets = parser.add_mutually_exclusive_group(required=True)
    targets.add_argument("--stack", help="preview this stack offline and check it")
    targets.add_argument(
        "files", nargs="*", type=Path, default=[], help="`pulumi preview --json` or `pulumi stack export` files"
    )
    parser.add_argument(
        "--env",
        choices=["dev", "staging", "prod"],
        help="environment (default: the stack config's; on a file, the one it records, else the stack name)",
    )
    parser.add_argument("--config", type=Path, help="policy pack config, as for `pulumi preview --policy-pack-config`")
    parser.add_argument("--format", choices=["text", "json"], default="text")


def _policy(args: argparse.Namespace) -> int:
    from llm_mesh_policies import PACK_NAME, POLICIES

    from llm_mesh.checks.policy_runner import PolicyConfigError, check_config_keys, run_policies
    from llm_mesh.engine.readers import EngineDocument, load_engine_document

    project = project_of(args.project)
    stack, files, env, config_file = args.stack, args.files, args.env, args.config
    if not stack and not files:
        raise InputError("name a --stack or at least one file")
    config = _policy_config(config_file) if config_file else {}
    try:
        check_config_keys(POLICIES, config)  # before the program runs
    except PolicyConfigError as exc:
        raise PolicyConfigError(f"{config_file}: {exc}") from None
    if stack:
        resources, stack_config = offline_resources(project, stack)
        # The stack's own config says which environment it is, whatever the stack is called.
        env = env or stack_config.environment
        sources = [(f"{project.name}/{stack}", EngineDocument(resources, True))]
    else:
        sources = [(str(f), load_engine_document(f)) for f in files]
    try:
        # Each document judged by the environment it records (the stack's config is in it), as --stack reads it.
        reports = [
            (label, run_policies(POLICIES, document.resources, config, env or document.environment, document.complete))
            for label, document in sources
        ]
    except PolicyConfigError as exc:  # a level the environment does not allow: the file is where to fix it
        raise PolicyConfigError(f"{config_file}: {exc}") from None
    if args.format == "json":
        print(
            json.dumps(
                {
                    "policyPack": PACK_NAME,
                    "results": [{"source": label, **report.as_json()} for label, report in reports],
                },
                indent=2,
            )
        )
    else:
        for label, report in reports:
            _print_report(PACK_NAME, label, report)
    return EXIT_FINDINGS if any(report.mandatory_violations for _, report in reports) else 0


POLICY = Command(_arguments, _policy)


def _policy_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise read_problem("policy config", path, exc) from None
    if not isinstance(config, dict):
        raise InputError(f"policy config {path}: a JSON object of rule names was expected")
    return config


def _print_report(pack: str, label: str, report: PolicyReport) -> None:
    out = cli.out
    out.print(f"Policy pack {pack} on {label} (environment {report.environment}): {count(len(report.levels), 'rule')}")
    for name, level in report.levels.items():
        found = [v for v in report.violations if v.policy == name]
        mark = (
            Text("  ✓ ", style="green")
            if not found
            else Text("  ✗ ", style="red" if level == "mandatory" else "yellow")
        )
        out.print(mark + Text(f"{name:<40} {level:<10} {len(found) or ''}"), soft_wrap=one_line())
        for violation in found:
            out.print(f"      {violation.urn}", soft_wrap=one_line())
            out.print(f"        {violation.message}", soft_wrap=one_line())
    for name, urn, why in report.not_evaluated:
        out.print(f"  not evaluated: {name} on {urn or 'the stack'}: {why}", soft_wrap=one_line())
    mandatory = len(report.mandatory_violations)
    out.print(
        f"Summary: {count(len(report.violations), 'violation')} ({mandatory} mandatory) of {count(len(report.levels), 'rule')}\n"
    )
