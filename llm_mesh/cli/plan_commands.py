"""`preview`, `render` and `validate`: a stack's plan, run offline, shown, written as YAML and checked."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text

from llm_mesh import cli
from llm_mesh.cli.exits import EXIT_FINDINGS
from llm_mesh.cli.output import one_line, relative, writable
from llm_mesh.cli.registry import Command
from llm_mesh.cli.stacks import offline_resources, project_of, record
from llm_mesh.engine.stackfile import Project, read_stack_settings
from llm_mesh.errors import InputError
from llm_mesh.words import count

if TYPE_CHECKING:
    from llm_mesh.engine.readers import EngineResource
    from llm_mesh.plan.config import StackConfig


def _preview_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, help="stack name: dev, staging, prod")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write a `pulumi preview --json` document")


def _preview(args: argparse.Namespace) -> int:
    from llm_mesh.cli.plan_table import print_plan
    from llm_mesh.engine.document import preview_document
    from llm_mesh.plan.config import config_from_pulumi
    from llm_mesh.plan.prerequisites import outside_the_stack

    project, stack, json_path = project_of(args.project), args.stack, args.json
    if json_path is not None:
        # Said before the program runs, not after.
        writable(json_path, "--json", lambda text: text.lstrip().startswith('{\n  "steps"'))
    recording, settings = record(project, stack)
    document = preview_document(recording)
    config = config_from_pulumi(settings.config)
    if json_path is not None:
        json_path.write_text(json.dumps(document, indent=2) + "\n")
    # Printed once the program ran: a config error prints its lines and nothing else.
    cli.out.print(f"Previewing {project.name}/{stack} offline (Pulumi SDK mock runtime: no cloud calls, no state)\n")
    print_plan(document)
    for model in config.models:
        cli.out.print(f"Model {model.name}: {config.fit_for(model).summary()}", soft_wrap=one_line())
    for need in outside_the_stack(config):
        cli.out.print(f"Needed before traffic, not created by the stack: {need}", soft_wrap=one_line())
    if json_path is not None:
        cli.out.print(f"Wrote {relative(json_path)}")
    return EXIT_FINDINGS if any(d["severity"] == "error" for d in document["diagnostics"]) else 0


PREVIEW = Command(_preview_arguments, _preview)


def _render_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument(
        "--from",
        dest="deployed",
        type=Path,
        metavar="EXPORT",
        help="a `pulumi stack export` of the deployed stack: fills the values known only after deployment",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="write into a folder that holds files render did not write"
    )


def _render(args: argparse.Namespace) -> int:
    from llm_mesh.checks.kube_objects import (
        KubeObject,
        filled_from,
        helm_releases,
        kube_objects,
        render,
        render_check,
        unknown_paths,
        without_unknowns,
    )
    from llm_mesh.engine.readers import load_engine_document

    project, out_dir, deployed, overwrite = project_of(args.project), args.out, args.deployed, args.overwrite
    render_check(out_dir, overwrite)  # before the program runs
    state: list[EngineResource] = []
    if deployed is not None:
        document = load_engine_document(deployed)
        if not document.from_export:
            raise InputError(
                f"--from {deployed}: a preview, not a `pulumi stack export`; the values known only after "
                "deployment are in the export of the deployed stack"
            )
        state = document.resources
    resources, _ = offline_resources(project, args.stack)
    objects = filled_from(kube_objects(resources), state)
    unknown = [(obj, path) for obj in objects for path in unknown_paths(obj.manifest)]
    written = render([KubeObject(o.urn, without_unknowns(o.manifest)) for o in objects], out_dir, overwrite)
    cli.out.print(f"Wrote {count(len(written), 'object')} and kustomization.yaml to {relative(out_dir)}")
    for release in helm_releases(resources):
        inputs = release.inputs
        cli.out.print(
            f"  not rendered: Helm release {inputs.get('name')} (chart {inputs.get('chart')} {inputs.get('version')}), installed by pulumi up"
        )
    for obj, path in unknown:
        cli.out.print(f"  left out, known only after deployment: {obj.key} {path}", soft_wrap=one_line())
    if unknown:
        cli.out.print(
            f"{count(len(unknown), 'value is', 'values are')} known only after `pulumi up`: render with --from a `pulumi stack export` "
            "of the deployed stack to write them",
            soft_wrap=one_line(),
        )
    return 0


RENDER = Command(_render_arguments, _render)


def _validate_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="preview this stack offline and validate it")
    source.add_argument("file", nargs="?", type=Path, help="a `pulumi preview --json` or `pulumi stack export` file")
    parser.add_argument("--kubernetes-version", help="schema version for a FILE (default: the stack config's, or 1.34)")


# Codes that read the whole plan (a route's Service, a policy's service account, a pool's workloads, a gateway's
# servers and rate limit): a partial preview would turn each missing unchanged resource into a false finding.
WHOLE_PLAN_CODES = frozenset(
    {
        "LM0101", "LM0102", "LM0103", "LM0106", "LM0107", "LM0110", "LM0113", "LM0114", "LM0115", "LM0116", "LM0118",
        "LM0123", "LM0124", "LM0126", "LM0127", "LM0128", "LM0129", "LM0130", "LM0131",
    }
)  # fmt: skip


def _validate(args: argparse.Namespace) -> int:
    # Imported here: the schemas and the policy pack's helpers are for checking, not for `make preview`.
    from llm_mesh.checks.analysis import analyze, inventory
    from llm_mesh.checks.inference_routing import inference_routing_findings
    from llm_mesh.checks.kube_objects import helm_releases, kube_objects
    from llm_mesh.checks.schemas import check_version, schema_findings, unchecked
    from llm_mesh.checks.serving import serving_findings
    from llm_mesh.engine.readers import load_engine_document

    project, stack, file, kubernetes_version = project_of(args.project), args.stack, args.file, args.kubernetes_version
    config: StackConfig | None = None
    if kubernetes_version:
        check_version(kubernetes_version)  # before the program runs: a wrong version wastes nothing
    complete, recorded = True, None
    if stack:
        resources, config = offline_resources(project, stack)
    else:
        assert file is not None
        document = load_engine_document(file)
        resources, complete, recorded = document.resources, document.complete, document.environment
        config = _config_for(project, resources)
    version = kubernetes_version or (config.cluster.kubernetes_version if config else "1.34")
    check_version(version)
    declared = set(config.security.callers) if config else set()
    objects = kube_objects(resources)
    # A document's own environment first: the stack file here may have changed since, or be another stack's.
    environment = recorded or (config.environment if config else _environment_of(resources))
    findings = (
        schema_findings(objects, version)
        + analyze(inventory(objects, helm_releases(resources), declared))
        + serving_findings(resources, environment)
        + inference_routing_findings(objects)
    )
    if not complete:
        # A preview of changes alone lists no unchanged resources: what a rule would miss there is not judged.
        findings = [f for f in findings if f.code not in WHOLE_PLAN_CODES]
        cli.out.print(
            f"not judged (a preview that lists only what changes): {', '.join(sorted(WHOLE_PLAN_CODES))}; write it "
            "with `pulumi preview --json --show-sames`, or use `pulumi stack export`",
            soft_wrap=one_line(),
        )
    for finding in findings:
        style = "red" if finding.severity == "error" else "yellow"
        cli.out.print(Text(finding.line(), style=style), soft_wrap=one_line())
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    others = unchecked(objects)
    if others:
        kinds = ", ".join(sorted({f"{o.api_version} {o.kind}" for o in others}))
        cli.out.print(
            f"not schema-checked (no published schema here): {count(len(others), 'object')} of {kinds}",
            soft_wrap=one_line(),
        )
    cli.out.print(
        f"{count(len(objects), 'object')} checked (Kubernetes {version} schemas, Istio CRD schemas, mesh analysis): "
        f"{count(errors, 'error')}, {count(warnings, 'warning')}",
        soft_wrap=one_line(),
    )
    return EXIT_FINDINGS if errors else 0


VALIDATE = Command(_validate_arguments, _validate)


def _environment_of(resources: list[EngineResource]) -> str:
    """The stack name in the URNs when it names an environment; else prod, the strictest."""
    stacks = {r.stack for r in resources}
    return stacks.pop() if len(stacks) == 1 and stacks <= {"dev", "staging", "prod"} else "prod"


def _config_for(project: Project, resources: list[EngineResource]) -> StackConfig | None:
    """The stack config named by the document's URNs, when this project has that stack."""
    from llm_mesh.plan.config import ConfigError, config_from_pulumi

    stacks = {r.stack for r in resources}
    if len(stacks) != 1:
        return None
    try:
        return config_from_pulumi(read_stack_settings(project, stacks.pop()).config)
    except (FileNotFoundError, ConfigError):
        return None
