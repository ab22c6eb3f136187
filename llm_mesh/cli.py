"""The `llm-mesh` command: thin commands over the library."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from llm_mesh.checks.policy_runner import PolicyReport
    from llm_mesh.engine.run import Recording

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
from llm_mesh.checks.serving import serving_findings
from llm_mesh.engine.readers import (
    DocumentError,
    EngineDocument,
    EngineResource,
    load_engine_document,
    read_document,
)
from llm_mesh.engine.stackfile import Project, StackSettings, is_pulumi_file, read_stack_settings
from llm_mesh.engine.summary import gpu_capacity
from llm_mesh.errors import InputError, read_problem
from llm_mesh.plan.config import ConfigError, StackConfig, config_from_pulumi
from llm_mesh.plan.topology import INGRESS_NAMESPACE
from llm_mesh.words import count

# Exit codes, the same for every command (README: "Exit codes").
EXIT_FINDINGS = 1  # the command ran and found problems: validate errors, mandatory violations, missing artifacts
EXIT_UNUSABLE = 2  # an input it cannot use: a file, a config mistake, a path, credentials, an endpoint, a version
EXIT_PROGRAM_FAILED = 3  # the Pulumi program raised on a valid config: a bug to report
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM, as shells report an interrupted command
EXIT_BROKEN_PIPE = 141  # the output's reader closed it, as shells report a command ended by SIGPIPE

# Piped output (CI logs, PR comments) keeps each resource on one line instead of wrapping at 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _one_line() -> bool:
    """Long lines stay whole where there is room or output is piped (CI logs, PR comments), and are wrapped at
    word boundaries on a narrow terminal."""
    return out.width >= WIDE_PLAN_COLUMNS


def main(argv: list[str] | None = None) -> int:
    try:
        with _terminate_as_interrupt():
            return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C or a CI job cancelled: temporary worktrees and folders are gone by now (their `finally`s ran).
        err.print(Text("interrupted", style="red"))
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="llm-mesh", description="Offline tools for the llm-mesh Pulumi stack.")
    parser.add_argument(
        "--project", type=Path, default=None, help="the Pulumi project folder (default: found from here)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    preview = commands.add_parser("preview", help="run the program offline and show what `pulumi up` would create")
    preview.add_argument("--stack", required=True, help="stack name: dev, staging, prod")
    preview.add_argument("--json", type=Path, metavar="FILE", help="also write a `pulumi preview --json` document")
    render = commands.add_parser(
        "render", help="write every Kubernetes object of a stack as YAML, with a kustomization"
    )
    render.add_argument("--stack", required=True)
    render.add_argument("--out", type=Path, required=True, metavar="DIR")
    render.add_argument(
        "--from",
        dest="deployed",
        type=Path,
        metavar="EXPORT",
        help="a `pulumi stack export` of the deployed stack: fills the values known only after deployment",
    )
    render.add_argument(
        "--overwrite", action="store_true", help="write into a folder that holds files render did not write"
    )
    validate = commands.add_parser(
        "validate", help="check objects against Kubernetes and Istio schemas and mesh semantics"
    )
    source = validate.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="preview this stack offline and validate it")
    source.add_argument("file", nargs="?", type=Path, help="a `pulumi preview --json` or `pulumi stack export` file")
    validate.add_argument(
        "--kubernetes-version", help="schema version for a FILE (default: the stack config's, or 1.34)"
    )
    policy = commands.add_parser("policy", help="run the policy pack offline on a stack or on engine output files")
    targets = policy.add_mutually_exclusive_group(required=True)
    targets.add_argument("--stack", help="preview this stack offline and check it")
    targets.add_argument(
        "files", nargs="*", type=Path, default=[], help="`pulumi preview --json` or `pulumi stack export` files"
    )
    policy.add_argument(
        "--env", choices=["dev", "staging", "prod"], help="environment (default: the stack name in the URNs)"
    )
    policy.add_argument("--config", type=Path, help="policy pack config, as for `pulumi preview --policy-pack-config`")
    policy.add_argument("--format", choices=["text", "json"], default="text")
    compare = commands.add_parser(
        "diff", help="what changes between two engine documents (offline previews, pulumi preview --json, stack export)"
    )
    compare.add_argument("base", type=Path, help="the document before")
    compare.add_argument("head", type=Path, help="the document after")
    compare.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    compare.add_argument(
        "--prices", type=Path, metavar="FILE", help="GPU node prices (default: the dated table shipped)"
    )
    review = commands.add_parser(
        "review", help="preview each stack at a git ref and at the working tree; a Markdown report for a pull request"
    )
    review.add_argument("--base", required=True, metavar="REF", help="the git ref to compare with (e.g. origin/main)")
    review.add_argument("--stack", action="append", metavar="ENV", help="a stack to review (default: every stack)")
    review.add_argument("--out", type=Path, metavar="FILE", help="also write the report to FILE")
    review.add_argument(
        "--prices", type=Path, metavar="FILE", help="GPU node prices (default: the dated table shipped)"
    )
    canary = commands.add_parser(
        "canary", help="move a canary step by step: each step a stack-file edit and a pulumi up"
    )
    canary_commands = canary.add_subparsers(dest="canary_command", required=True)
    for verb, text in (
        ("status", "weights, versions, replicas and the last analysis"),
        ("advance", "raise the canary weight by a step (capped by canary.maxWeight)"),
        ("promote", "make the canary version stable, then remove the canary"),
        ("rollback", "set the canary weight to 0 at once"),
        ("run", "the whole progression: verify, then check and step until promoted or rolled back"),
    ):
        sub = canary_commands.add_parser(verb, help=text)
        sub.add_argument("--stack", required=True)
        sub.add_argument("--model", required=True)
        if verb == "advance":
            sub.add_argument("--step", type=int, help="percent to add (default: canary.step)")
        if verb in ("advance", "promote", "rollback"):
            sub.add_argument("--dry-run", action="store_true", help="show the offline diff instead of applying")
        if verb == "run":
            sub.add_argument("--prometheus-url", help="Prometheus query API (default: canary.prometheusUrl)")
            sub.add_argument("--max-checks", type=int, default=100, help="stop undecided after this many checks")
    models = commands.add_parser("models", help="operate on the model artifacts the stack serves")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    verify = model_commands.add_parser(
        "verify", help="check that each served version's artifacts exist and match config"
    )
    verify.add_argument("--stack", required=True)
    verify.add_argument("--s3-endpoint-url", help="S3 endpoint (default: AWS, or AWS_ENDPOINT_URL)")
    verify.add_argument("--format", choices=["text", "json"], default="text")
    push = model_commands.add_parser(
        "push", help="upload a version's files to its bucket and record them (path, size, sha256) in the stack file"
    )
    push.add_argument("--stack", required=True)
    push.add_argument("--model", required=True, help="a model of llm-mesh:models")
    push.add_argument("--version", required=True, help="the version a track (stable, canary or mirror) names")
    push.add_argument("folder", type=Path, metavar="DIR", help="the folder of the version's files")
    push.add_argument(
        "--to",
        metavar="URL",
        help="gs://BUCKET/PREFIX or s3://BUCKET/PREFIX, a registry the stack imports from, written as the "
        "version's source (default: the stack's model store, at <model>/<version>/)",
    )
    push.add_argument(
        "--move",
        action="store_true",
        help="let --to change the source of a version already imported from elsewhere (same files, new registry)",
    )
    push.add_argument("--s3-endpoint-url", help="S3 endpoint (default: AWS, or AWS_ENDPOINT_URL)")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except BrokenPipeError:
        # The reader went away (`llm-mesh diff a b | head`): stop quietly, as tools killed by SIGPIPE do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_BROKEN_PIPE
    except ModuleNotFoundError as exc:
        # `make preview` installs only what the preview needs; the other commands need requirements/dev.txt.
        err.print(
            Text(
                f"error: `llm-mesh {args.command}` needs {exc.name}, which `make preview` does not install; run "
                "`make test` once, or `.venv/bin/pip install -r requirements/dev.txt`",
                style="red",
            )
        )
        return EXIT_UNUSABLE
    except (InputError, OSError) as exc:
        # A user's mistake (a file that is missing, unreadable or malformed): one line, no traceback.
        err.print(Text(f"error: {exc}", style="red"))
        return EXIT_UNUSABLE


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (what a CI runner sends a cancelled job) ends the command as Ctrl-C does, cleaning up on the way;
    Python's default would end the process without running any `finally`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    if args.command == "diff":  # two documents; no project involved
        return _diff(args.base, args.head, args.format, args.prices)
    writes = "models-push" if args.command == "models" and args.models_command == "push" else args.command
    project = Project.find(args.project) if args.project else _default_project(writes)
    if args.command == "render":
        return _render(project, args.stack, args.out, args.deployed, args.overwrite)
    if args.command == "validate":
        return _validate(project, args.stack, args.file, args.kubernetes_version)
    if args.command == "policy":
        return _policy(project, args.stack, args.files, args.env, args.config, args.format)
    if args.command == "models" and args.models_command == "push":
        return _push_models(
            project, args.stack, args.model, args.version, args.folder, args.to, args.s3_endpoint_url, args.move
        )
    if args.command == "review":
        return _review(project, args.base, args.stack, args.out, args.prices)
    if args.command == "canary":
        return _canary(project, args)
    if args.command == "models":
        return _verify_models(project, args.stack, args.s3_endpoint_url, args.format)
    return _preview(project, args.stack, args.json)


def _default_project(command: str) -> Project:
    try:
        return Project.find(Path.cwd())
    except FileNotFoundError:
        pass
    # Installed editable into the project's own .venv: the project is beside the package. Said aloud, and not
    # for the commands that write to a stack file or a cluster: those only where the user is, or --project.
    installed = Project.find(Path(__file__).resolve().parent.parent)
    if command in ("canary", "models-push"):
        raise FileNotFoundError(
            f"no Pulumi.yaml in {Path.cwd()} or any folder above it; run from the project, or give --project "
            f"(llm-mesh is installed from {_relative(installed.root)})"
        )
    err.print(f"note: no Pulumi.yaml here or above; using {installed.root}, where llm-mesh is installed")
    return installed


def _preview(project: Project, stack: str, json_path: Path | None) -> int:
    from llm_mesh.engine.document import preview_document

    if json_path is not None:
        # Said before the program runs, not after.
        _writable(json_path, "--json", lambda text: text.lstrip().startswith('{\n  "steps"'))
    try:
        recording, settings = _record(project, stack)
    except _Stop as stop:
        return stop.code
    document = preview_document(recording)
    config = config_from_pulumi(settings.config)
    if json_path is not None:
        json_path.write_text(json.dumps(document, indent=2) + "\n")
    # Printed once the program ran: a config error prints its lines and nothing else.
    out.print(f"Previewing {project.name}/{stack} offline (Pulumi SDK mock runtime: no cloud calls, no state)\n")
    _print_plan(document)
    for model in config.models:
        out.print(f"Model {model.name}: {config.fit_for(model).summary()}", soft_wrap=_one_line())
    for need in outside_the_stack(config):
        out.print(f"Needed before traffic, not created by the stack: {need}", soft_wrap=_one_line())
    if json_path is not None:
        out.print(f"Wrote {_relative(json_path)}")
    return EXIT_FINDINGS if any(d["severity"] == "error" for d in document["diagnostics"]) else 0


class OutputPathError(InputError):
    """An output path the command cannot write to."""


def _writable(path: Path, option: str, ours: Callable[[str], bool]) -> None:
    """An output file goes into an existing folder, and replaces only a file this command wrote before."""
    if path.is_dir():
        raise OutputPathError(f"{option} {path}: is a folder; name a file in it")
    if not path.parent.is_dir():
        raise OutputPathError(f"{option} {path}: folder {path.parent} does not exist; create it or write elsewhere")
    if path.is_file():
        try:
            text = path.read_text()[:200]
        except (OSError, UnicodeDecodeError):
            text = ""
        if not ours(text):
            raise OutputPathError(f"{option} {path}: a file this command did not write; name a new file or remove it")


class _Stop(Exception):
    """Already reported to the user; exit with this code."""

    def __init__(self, code: int):
        self.code = code


def _record(project: Project, stack: str) -> tuple[Recording, StackSettings]:
    """Run the stack's program offline; config mistakes and program failures are reported, not raised."""
    # Imported here: the SDK's runtime is heavy and only the commands that run the program need it.
    from llm_mesh.engine.run import run_program

    settings = read_stack_settings(project, stack)
    try:
        return run_program(project, stack, settings), settings
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(Text(f"error: {_relative(project.stack_file(stack))}: {problem}", style="red"))
        raise _Stop(EXIT_UNUSABLE) from None
    except Exception as exc:
        if os.environ.get("LLM_MESH_DEBUG"):
            raise
        err.print(Text(f"error: the program failed: {type(exc).__name__}: {exc}", style="red"))
        err.print("(set LLM_MESH_DEBUG=1 to see the traceback)")
        raise _Stop(EXIT_PROGRAM_FAILED) from None


def _offline_resources(project: Project, stack: str) -> tuple[list[EngineResource], StackConfig]:
    """Run the stack offline (as `preview` does) and read its document back, as any other document."""
    from llm_mesh.engine.document import preview_document

    recording, settings = _record(project, stack)
    return read_document(preview_document(recording)), config_from_pulumi(settings.config)


def _render(project: Project, stack: str, out_dir: Path, deployed: Path | None, overwrite: bool) -> int:
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
    try:
        resources, _ = _offline_resources(project, stack)
    except _Stop as stop:
        return stop.code
    objects = filled_from(kube_objects(resources), state)
    unknown = [(obj, path) for obj in objects for path in unknown_paths(obj.manifest)]
    written = render([KubeObject(o.urn, without_unknowns(o.manifest)) for o in objects], out_dir, overwrite)
    out.print(f"Wrote {count(len(written), 'object')} and kustomization.yaml to {_relative(out_dir)}")
    for release in helm_releases(resources):
        inputs = release.inputs
        out.print(
            f"  not rendered: Helm release {inputs.get('name')} (chart {inputs.get('chart')} {inputs.get('version')}), installed by pulumi up"
        )
    for obj, path in unknown:
        out.print(f"  left out, known only after deployment: {obj.key} {path}", soft_wrap=_one_line())
    if unknown:
        out.print(
            f"{count(len(unknown), 'value is', 'values are')} known only after `pulumi up`: render with --from a `pulumi stack export` "
            "of the deployed stack to write them",
            soft_wrap=_one_line(),
        )
    return 0


# Codes that read the whole plan (a route's Service, a policy's service account, a pool's workloads): a partial
# preview would turn each missing unchanged resource into a false finding.
WHOLE_PLAN_CODES = frozenset(
    {"LM0101", "LM0102", "LM0103", "LM0106", "LM0107", "LM0110", "LM0113", "LM0114", "LM0115", "LM0116", "LM0118"}
)


def _validate(project: Project, stack: str | None, file: Path | None, kubernetes_version: str | None) -> int:
    # Imported here: the schemas and the policy pack's helpers are for checking, not for `make preview`.
    from llm_mesh.checks.analysis import analyze, inventory
    from llm_mesh.checks.schemas import check_version, schema_findings, unchecked

    config: StackConfig | None = None
    if kubernetes_version:
        check_version(kubernetes_version)  # before the program runs: a wrong version wastes nothing
    complete = True
    try:
        if stack:
            resources, config = _offline_resources(project, stack)
        else:
            assert file is not None
            document = load_engine_document(file)
            resources, complete = document.resources, document.complete
            config = _config_for(project, resources)
    except _Stop as stop:
        return stop.code
    version = kubernetes_version or (config.cluster.kubernetes_version if config else "1.34")
    check_version(version)
    declared = set(config.security.callers) if config else set()
    objects = kube_objects(resources)
    environment = config.environment if config else _environment_of(resources)
    findings = (
        schema_findings(objects, version)
        + analyze(inventory(objects, helm_releases(resources), declared))
        + serving_findings(resources, environment)
    )
    if not complete:
        # A preview of changes alone lists no unchanged resources: what a rule would miss there is not judged.
        findings = [f for f in findings if f.code not in WHOLE_PLAN_CODES]
        out.print(
            f"not judged (a preview that lists only what changes): {', '.join(sorted(WHOLE_PLAN_CODES))}; write it "
            "with `pulumi preview --json --show-sames`, or use `pulumi stack export`",
            soft_wrap=_one_line(),
        )
    for finding in findings:
        style = "red" if finding.severity == "error" else "yellow"
        out.print(Text(finding.line(), style=style), soft_wrap=_one_line())
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    others = unchecked(objects)
    if others:
        kinds = ", ".join(sorted({f"{o.api_version} {o.kind}" for o in others}))
        out.print(
            f"not schema-checked (no published schema here): {count(len(others), 'object')} of {kinds}",
            soft_wrap=_one_line(),
        )
    out.print(
        f"{count(len(objects), 'object')} checked (Kubernetes {version} schemas, Istio CRD schemas, mesh analysis): "
        f"{count(errors, 'error')}, {count(warnings, 'warning')}",
        soft_wrap=_one_line(),
    )
    return EXIT_FINDINGS if errors else 0


def _policy(
    project: Project, stack: str | None, files: list[Path], env: str | None, config_file: Path | None, fmt: str
) -> int:
    from llm_mesh_policies import PACK_NAME, POLICIES

    from llm_mesh.checks.policy_runner import PolicyConfigError, check_config_keys, run_policies

    if not stack and not files:
        err.print("error: name a --stack or at least one file")
        return EXIT_UNUSABLE
    try:
        config = _policy_config(config_file) if config_file else {}
        try:
            check_config_keys(POLICIES, config)  # before the program runs
        except PolicyConfigError as exc:
            raise PolicyConfigError(f"{config_file}: {exc}") from None
        if stack:
            resources, stack_config = _offline_resources(project, stack)
            # The stack's own config says which environment it is, whatever the stack is called.
            env = env or stack_config.environment
            sources = [(f"{project.name}/{stack}", EngineDocument(resources, True))]
        else:
            sources = [(str(f), load_engine_document(f)) for f in files]
        try:
            reports = [
                (label, run_policies(POLICIES, document.resources, config, env, document.complete))
                for label, document in sources
            ]
        except PolicyConfigError as exc:  # a level the environment does not allow: the file is where to fix it
            raise PolicyConfigError(f"{config_file}: {exc}") from None
    except _Stop as stop:
        return stop.code
    if fmt == "json":
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
            _print_policy_report(PACK_NAME, label, report)
    return EXIT_FINDINGS if any(report.mandatory_violations for _, report in reports) else 0


def _diff(base_path: Path, head_path: Path, fmt: str, prices_path: Path | None) -> int:
    from llm_mesh.ops.capacity import Capacity, Prices, as_json, capacity_line
    from llm_mesh.ops.diff import diff, json_report, restacked, stack_of, states, text_report

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
            err.print(note, soft_wrap=_one_line())
    print(text_report(result, base, head, markdown=fmt == "markdown"))
    print(capacity_line(Capacity.of(base), Capacity.of(head), prices))
    return 0


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


def _review(
    project: Project, base_ref: str, stacks: list[str] | None, out_path: Path | None, prices_path: Path | None
) -> int:
    import subprocess

    from llm_mesh_policies import POLICIES

    from llm_mesh.checks.policy_runner import run_policies
    from llm_mesh.ops.capacity import Prices
    from llm_mesh.ops.review import MARKER, failed, markdown, preview_both, review_stack

    prices = Prices.load(prices_path)
    if out_path is not None:
        _not_a_stack_file(project, out_path)
        _writable(out_path, "--out", lambda text: text.startswith(MARKER))
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


def _not_a_stack_file(project: Project, path: Path) -> None:
    """The report never lands where Pulumi (and the next review) would read it as a stack's config."""
    if is_pulumi_file(path):
        raise OutputPathError(f"--out {path}: named like a Pulumi project or stack file; name it e.g. review.md")
    stack_dir = project.stack_config_dir.resolve()
    # stackConfigDir "." puts stack files beside everything else: then only the name says what a file is.
    if stack_dir != project.root.resolve() and path.resolve().is_relative_to(stack_dir):
        raise OutputPathError(
            f"--out {path}: in the stack config folder {_relative(project.stack_config_dir)}; write the report "
            "outside it, e.g. --out review.md"
        )


def _canary(project: Project, args: argparse.Namespace) -> int:
    from llm_mesh.ops import canary
    from llm_mesh.plan.inference import replicas

    stack, model = args.stack, args.model

    def load() -> StackConfig:
        try:
            return config_from_pulumi(read_stack_settings(project, stack).config)
        except ConfigError as exc:
            raise InputError(f"{_relative(project.stack_file(stack))}: {exc.problems[0]}") from None

    config = load()
    split = canary.split_of(config, model)
    log = lambda line: out.print(Text(line), soft_wrap=_one_line())  # noqa: E731
    verb = args.canary_command
    if verb == "status":
        served = next(m for m in config.models if m.name == model)
        out.print(f"{model} in {stack}: stable {split.stable}, canary {split.canary or '(none)'} at {split.weight}%")
        out.print(
            f"replicas: stable {served.min_replicas}–{served.max_replicas} (autoscaled), canary "
            f"{replicas(served, 'canary') if split.canary else 0}"
        )
        last = canary.load_status(project, stack, model)
        out.print(f"last analysis: {json.dumps(last) if last else 'none'}", soft_wrap=_one_line())
        return 0
    if split.canary is None:
        raise InputError(f"--model {model}: no canary version in {_relative(project.stack_file(stack))}; add one first")
    if getattr(args, "dry_run", False):
        return _canary_dry_run(project, stack, model, verb, args, config)
    if verb == "advance" and args.step is not None and args.step <= 0:
        raise InputError(f"--step {args.step}: a step adds percent to the canary; use `canary rollback` to lower it")
    deployer = canary.AutomationDeployer(project, log)
    deployer.ready(stack)  # before the stack file is edited
    progression = canary.Progression(project, stack, model, load, deployer, canary.PrometheusApi(""), log)
    if verb == "advance":
        step = args.step or config.canary.step
        progression.step_to(min(split.weight + step, config.canary.max_weight))
        return 0
    if verb == "rollback":
        progression.rollback()
        return 0
    if verb == "promote":
        progression.promote()
        return 0
    # run: the canary's artifacts first; then the progression.
    problems, unusable = _canary_artifacts(config, stack, model)
    if problems:
        for line in problems:
            err.print(Text(f"error: {line}", style="red"))
        return EXIT_UNUSABLE if unusable else EXIT_FINDINGS
    progression.source = canary.PrometheusApi(args.prometheus_url or config.canary.prometheus_url)
    progression.max_checks = args.max_checks
    outcome = progression.run()
    canary.save_status(project, stack, model, outcome)
    out.print(f"{outcome.result}: canary {model} at {outcome.weight}%")
    return 0 if outcome.result == "promoted" else EXIT_FINDINGS


def _canary_artifacts(config: StackConfig, stack: str, model: str) -> tuple[list[str], bool]:
    """`models verify` for the canary version alone: no step on weights that are not there. True with the
    lines when the store could not be read at all (credentials, endpoint): unusable input, not a finding."""
    from llm_mesh.ops.artifacts import StoreUnusable, default_stores, sources, verify

    wanted = [s for s in sources(config, stack) if s.model == model and s.track == "canary"]
    try:
        results = verify(wanted, default_stores(config.gcp.project, None))
    except StoreUnusable as exc:
        return [str(exc)], True
    return [f"canary artifact {r.file.path}: {r.status} ({r.detail})" for r in results if not r.ok], False


def _canary_dry_run(
    project: Project, stack: str, model: str, verb: str, args: argparse.Namespace, config: StackConfig
) -> int:
    """The step made on a copy of the stack file, and both previewed offline: what `pulumi up` would change."""
    import shutil
    import tempfile

    from llm_mesh.ops import canary
    from llm_mesh.ops.diff import diff, states, text_report
    from llm_mesh.ops.review import collect, start_previews

    with tempfile.TemporaryDirectory(prefix="llm-mesh-canary-") as scratch:
        copy_root = Path(scratch) / "project"
        copy_root.mkdir()
        for entry in project.root.iterdir():
            if entry.name in (".git", ".venv", project.stack_config_dir.name):
                continue
            (copy_root / entry.name).symlink_to(entry)
        shutil.copytree(project.stack_config_dir, copy_root / project.stack_config_dir.relative_to(project.root))
        copy = Project(copy_root, project.name, copy_root / project.stack_config_dir.relative_to(project.root))
        split = canary.split_of(config, model)
        if verb == "advance":
            canary.set_weight(
                copy, stack, model, min(split.weight + (args.step or config.canary.step), config.canary.max_weight)
            )
        elif verb == "rollback":
            canary.set_weight(copy, stack, model, 0)
        else:
            canary.make_canary_stable(copy, stack, model)
            canary.remove_canary(copy, stack, model)
        before = start_previews(project.root, [stack], Path(scratch) / "before")
        after = start_previews(copy_root, [stack], Path(scratch) / "after")
        sides = collect(before, Path(scratch) / "before", [stack]), collect(after, Path(scratch) / "after", [stack])
    for side in sides:
        if stack in side.errors:
            raise InputError(f"the dry run's preview failed: {side.errors[stack][0]}")
    base, head = states(sides[0].documents[stack]), states(sides[1].documents[stack])
    out.print(f"canary {verb} of {model} in {stack} (dry run, nothing applied):")
    print(text_report(diff(base, head), base, head))
    return 0


def _verify_models(project: Project, stack: str, s3_endpoint_url: str | None, fmt: str) -> int:
    from llm_mesh.ops.artifacts import StoreUnusable, default_stores, sources, verify

    try:
        config = config_from_pulumi(read_stack_settings(project, stack).config)
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(Text(f"error: {_relative(project.stack_file(stack))}: {problem}", style="red"))
        return EXIT_UNUSABLE
    versions = sources(config, stack)
    try:
        results = verify(versions, default_stores(config.gcp.project, s3_endpoint_url))
    except StoreUnusable as exc:
        err.print(Text(f"error: {exc}", style="red"))
        return EXIT_UNUSABLE
    bad = [r for r in results if not r.ok]
    if fmt == "json":
        rows = [
            {"model": r.source.model, "track": r.source.track, "version": r.source.version, "source": r.source.url,
             "file": r.file.path, "status": r.status, "detail": r.detail}
            for r in results
        ]  # fmt: skip
        print(json.dumps({"stack": stack, "files": rows, "problems": len(bad)}, indent=2))
        return EXIT_FINDINGS if bad else 0
    out.print(
        f"Model artifacts of {project.name}/{stack}: {count(len(versions), 'version')}, {count(len(results), 'file')}"
    )
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for column in ("model", "track", "version", "file", "status", "detail"):
        table.add_column(column)
    for r in results:
        style = "green" if r.ok else "red"
        table.add_row(
            r.source.model, r.source.track, r.source.version, r.file.path, Text(r.status, style=style), r.detail
        )
    out.print(table)
    summary = f"{len(results) - len(bad)} of {count(len(results), 'file')} ok"
    out.print(summary + (f"; {len(bad)} missing or different" if bad else ""))
    return EXIT_FINDINGS if bad else 0


def _policy_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise read_problem("policy config", path, exc) from None
    if not isinstance(config, dict):
        raise InputError(f"policy config {path}: a JSON object of rule names was expected")
    return config


def _print_policy_report(pack: str, label: str, report: PolicyReport) -> None:
    out.print(f"Policy pack {pack} on {label} (environment {report.environment}): {count(len(report.levels), 'rule')}")
    for name, level in report.levels.items():
        found = [v for v in report.violations if v.policy == name]
        mark = (
            Text("  ✓ ", style="green")
            if not found
            else Text("  ✗ ", style="red" if level == "mandatory" else "yellow")
        )
        out.print(mark + Text(f"{name:<40} {level:<10} {len(found) or ''}"), soft_wrap=_one_line())
        for violation in found:
            out.print(f"      {violation.urn}", soft_wrap=_one_line())
            out.print(f"        {violation.message}", soft_wrap=_one_line())
    for name, urn, why in report.not_evaluated:
        out.print(f"  not evaluated: {name} on {urn or 'the stack'}: {why}", soft_wrap=_one_line())
    mandatory = len(report.mandatory_violations)
    out.print(
        f"Summary: {count(len(report.violations), 'violation')} ({mandatory} mandatory) of {count(len(report.levels), 'rule')}\n"
    )


def _environment_of(resources: list[EngineResource]) -> str:
    """The stack name in the URNs when it names an environment; else prod, the strictest."""
    stacks = {r.stack for r in resources}
    return stacks.pop() if len(stacks) == 1 and stacks <= {"dev", "staging", "prod"} else "prod"


def _config_for(project: Project, resources: list[EngineResource]) -> StackConfig | None:
    """The stack config named by the document's URNs, when this project has that stack."""
    stacks = {r.stack for r in resources}
    if len(stacks) != 1:
        return None
    try:
        return config_from_pulumi(read_stack_settings(project, stacks.pop()).config)
    except (FileNotFoundError, ConfigError):
        return None


# Below this width the full type tokens do not fit beside the names: the plan shows each kind by its last part.
WIDE_PLAN_COLUMNS = 140


def _print_plan(document: dict[str, Any]) -> None:
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column(" ", width=2, min_width=2, no_wrap=True)
    rows = _tree(document["steps"])
    if out.width >= WIDE_PLAN_COLUMNS:
        table.add_column("Type")
        table.add_column("Name")
        table.add_column("Plan")
        table.add_column("Info", style="yellow")
        for prefix, step in rows:
            state = step["newState"]
            info = "protected" if state.get("protect") else ""
            table.add_row(
                Text(" +", style="green"), prefix + state["type"], step["urn"].rsplit("::", 1)[-1], "create", info
            )
    else:
        # A narrow terminal (80 columns): the tree by name, each with its kind; every step is a create.
        # Fixed widths for the rest, so that only a long name is shortened (rich would squeeze every column).
        kind_width, info_width, gaps = 18, 9, 6
        name_width = max(20, out.width - 2 - kind_width - info_width - gaps)
        table.add_column("Name (all: create)", no_wrap=True, overflow="ellipsis", max_width=name_width)
        table.add_column("Kind", no_wrap=True, overflow="ellipsis", max_width=kind_width)
        table.add_column("Info", style="yellow", no_wrap=True, width=9)
        for prefix, step in rows:
            state = step["newState"]
            kind = state["type"].rsplit(":", 1)[-1]
            info = "protected" if state.get("protect") else ""
            table.add_row(Text(" +", style="green"), prefix + step["urn"].rsplit("::", 1)[-1], kind, info)
    out.print(table)
    for diagnostic in document["diagnostics"]:
        out.print(f"{diagnostic['severity']}: {diagnostic['message']}")
    creates = document["changeSummary"].get("create", 0)
    out.print(f"\nResources: [green]+ {creates} to create[/green]")
    unknown = document["offline"]["knownAfterDeploy"]
    if unknown:
        shown = ", ".join(unknown[:6]) + (", ..." if len(unknown) > 6 else "")
        out.print(f"Known only after deployment: {count(len(unknown), 'value')} ({shown})", soft_wrap=_one_line())
    for capacity in gpu_capacity(document):
        out.print(f"GPU capacity: {capacity}")


def outside_the_stack(config: StackConfig) -> list[str]:
    """What the plan refers to but does not create: the user provides it before traffic can flow."""
    needs = []
    if config.gateway.tls_credential_name:
        needs.append(
            f"Secret {INGRESS_NAMESPACE}/{config.gateway.tls_credential_name} (kubernetes.io/tls for "
            f"*.{config.gateway.domain}, gateway.tlsCredentialName), e.g. issued by cert-manager"
        )
    return needs


def _tree(steps: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Each step with the box-drawing prefix of its place under its parent (steps come parents first)."""
    children: dict[str, list[dict[str, Any]]] = {}
    for step in steps:
        children.setdefault(step["newState"].get("parent", ""), []).append(step)
    rows: list[tuple[str, dict[str, Any]]] = []

    def visit(parent: str, indent: str, depth: int) -> None:
        siblings = children.get(parent, [])
        for i, step in enumerate(siblings):
            last = i == len(siblings) - 1
            branch = "" if depth == 0 else ("└─ " if last else "├─ ")
            rows.append((indent + branch, step))
            deeper = indent + ("" if depth == 0 else ("   " if last else "│  "))
            visit(step["urn"], deeper, depth + 1)

    visit("", "", 0)
    return rows


def _relative(path: Path) -> str:
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def _push_models(
    project: Project,
    stack: str,
    model: str,
    version: str,
    folder: Path,
    to: str | None,
    s3_endpoint_url: str | None,
    move: bool,
) -> int:
    from llm_mesh.ops.models_push import PushError, plan_push, push

    try:
        plan = plan_push(project, stack, model, version, folder, to, s3_endpoint_url, move=move)
        for note in plan.notes:
            out.print(Text(note, style="yellow"), soft_wrap=_one_line())
        push(plan, lambda line: out.print(Text(line), soft_wrap=_one_line()))
    except ConfigError as exc:
        # Nothing is uploaded or written when the edited stack would not validate.
        for problem in exc.problems:
            err.print(Text(f"error: {_relative(project.stack_file(stack))}: {problem}", style="red"))
        return EXIT_UNUSABLE
    except PushError as exc:
        err.print(Text(f"error: {exc}", style="red"))
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
