"""`models verify|push`: the model artifacts a stack serves, checked in their stores or uploaded to them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table
from rich.text import Text

from llm_mesh import cli
from llm_mesh.cli.exits import EXIT_FINDINGS, config_problems_of
from llm_mesh.cli.output import one_line, url_with_scheme
from llm_mesh.cli.registry import Command
from llm_mesh.cli.stacks import project_of, stack_config
from llm_mesh.words import count


def _arguments(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="models_command", required=True)
    verify = verbs.add_parser("verify", help="check that each served version's artifacts exist and match config")
    verify.add_argument("--stack", required=True)
    verify.add_argument(
        "--s3-endpoint-url",
        type=url_with_scheme("http://localhost:5055"),
        help="S3 endpoint (default: AWS, or AWS_ENDPOINT_URL)",
    )
    verify.add_argument("--format", choices=["text", "json"], default="text")
    push = verbs.add_parser(
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
    push.add_argument(
        "--s3-endpoint-url",
        type=url_with_scheme("http://localhost:5055"),
        help="S3 endpoint (default: AWS, or AWS_ENDPOINT_URL)",
    )


def _models(args: argparse.Namespace) -> int:
    return _push(args) if args.models_command == "push" else _verify(args)


MODELS = Command(_arguments, _models)


def _verify(args: argparse.Namespace) -> int:
    from llm_mesh.ops.artifacts import default_stores, sources, verify

    project, stack = project_of(args.project), args.stack
    config = stack_config(project, stack)
    versions = sources(config, stack)
    results = verify(versions, default_stores(config.gcp.project, args.s3_endpoint_url))
    bad = [r for r in results if not r.ok]
    if args.format == "json":
        rows = [
            {"model": r.source.model, "track": r.source.track, "version": r.source.version, "source": r.source.url,
             "file": r.file.path, "status": r.status, "detail": r.detail}
            for r in results
        ]  # fmt: skip
        print(json.dumps({"stack": stack, "files": rows, "problems": len(bad)}, indent=2))
        return EXIT_FINDINGS if bad else 0
    cli.out.print(
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
    cli.out.print(table)
    summary = f"{len(results) - len(bad)} of {count(len(results), 'file')} ok"
    cli.out.print(summary + (f"; {len(bad)} missing or different" if bad else ""))
    return EXIT_FINDINGS if bad else 0


def _push(args: argparse.Namespace) -> int:
    from llm_mesh.ops.models_push import plan_push, push

    project, stack = project_of(args.project, writes=True), args.stack
    # Nothing is uploaded or written when the edited stack would not validate.
    with config_problems_of(project.stack_file(stack)):
        plan = plan_push(
            project, stack, args.model, args.version, args.folder, args.to, args.s3_endpoint_url, move=args.move
        )
        for note in plan.notes:
            cli.out.print(Text(note, style="yellow"), soft_wrap=one_line())
        push(plan, lambda line: cli.out.print(Text(line), soft_wrap=one_line()))
    return 0
