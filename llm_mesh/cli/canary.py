"""`canary status|advance|promote|rollback|run`: a canary moved step by step, each step a stack-file edit and a
`pulumi up` (the workflow is llm_mesh.ops.canary's; a dry run's is llm_mesh.ops.canary_dry_run's)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from rich.text import Text

from llm_mesh import cli
from llm_mesh.cli.exits import EXIT_FINDINGS, EXIT_UNDECIDED
from llm_mesh.cli.output import one_line, relative, url_with_scheme
from llm_mesh.cli.registry import Command
from llm_mesh.cli.stacks import project_of, stack_config
from llm_mesh.errors import InputError

if TYPE_CHECKING:
    from llm_mesh.plan.config import StackConfig

VERBS = {
    "status": "weights, versions, replicas and the last analysis",
    "advance": "raise the canary weight by a step (capped by canary.maxWeight)",
    "promote": "make the canary version stable, then remove the canary",
    "rollback": "set the canary weight to 0 at once",
    "run": "the whole progression: verify, then check and step until promoted or rolled back",
    "check": "one analysis of the canary against its limits, read-only (what `run` does at each interval)",
}


def _arguments(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="canary_command", required=True)
    for verb, text in VERBS.items():
        sub = verbs.add_parser(verb, help=text)
        sub.add_argument("--stack", required=True)
        sub.add_argument("--model", required=True)
        if verb == "advance":
            sub.add_argument("--step", type=int, help="percent to add (default: canary.step)")
        if verb in ("advance", "promote", "rollback"):
            sub.add_argument("--dry-run", action="store_true", help="show the offline diff instead of applying")
        if verb in ("run", "check"):
            sub.add_argument(
                "--prometheus-url",
                type=url_with_scheme("http://localhost:9090"),
                help="Prometheus query API (default: canary.prometheusUrl)",
            )
        if verb == "check":
            sub.add_argument(
                "--at", type=_instant, help="judge the canary as of this time (RFC 3339 or unix seconds; default: now)"
            )
        if verb == "run":
            sub.add_argument("--max-checks", type=int, default=100, help="stop undecided after this many checks")


def _canary(args: argparse.Namespace) -> int:
    from llm_mesh.ops import canary
    from llm_mesh.plan.inference import replicas

    project = project_of(args.project, writes=True)
    stack, model, verb = args.stack, args.model, args.canary_command
    config = stack_config(project, stack)
    split = canary.split_of(config, model)
    if verb == "status":
        served = next(m for m in config.models if m.name == model)
        cli.out.print(
            f"{model} in {stack}: stable {split.stable}, canary {split.canary or '(none)'} at {split.weight}%"
        )
        cli.out.print(
            f"replicas: stable {served.min_replicas}–{served.max_replicas} (autoscaled), canary "
            f"{replicas(served, 'canary') if split.canary else 0}"
        )
        if served.mirror is not None:
            cli.out.print(
                f"mirror {served.mirror.version.version}: {served.mirror.percentage:g}% of requests copied, "
                f"{replicas(served, 'mirror')} replica(s)"
            )
        step = canary.pending_step(project, stack, model)
        if step is not None:
            cli.out.print(
                f"unfinished: `{step}` (a crash or a failed `pulumi up`): the same command again finishes it, "
                "`canary rollback` abandons it",
                soft_wrap=one_line(),
            )
        last = canary.load_status(project, stack, model)
        cli.out.print(f"last analysis: {json.dumps(last) if last else 'none'}", soft_wrap=one_line())
        return 0
    no_canary = f"--model {model}: no canary version in {relative(project.stack_file(stack))}; add one first"
    if verb == "check":
        if split.canary is None:
            raise InputError(no_canary)
        return _check(config, stack, model, args.prometheus_url or config.canary.prometheus_url, args.at)
    if verb == "advance" and args.step is not None and args.step <= 0:
        # Before the dry run too: a dry run refuses what the real command refuses.
        raise InputError(f"--step {args.step}: a step adds percent to the canary; use `canary rollback` to lower it")
    pending = canary.pending_step(project, stack, model) is not None
    if split.canary is None and not pending:
        raise InputError(no_canary)
    if getattr(args, "dry_run", False):
        from llm_mesh.ops.canary_dry_run import dry_run

        report = dry_run(
            project, stack, model, verb, canary.advanced(split, config.canary, getattr(args, "step", None))
        )
        cli.out.print(f"canary {verb} of {model} in {stack} (dry run, nothing applied):")
        print(report)
        return 0

    def log(line: str) -> None:
        cli.out.print(Text(line), soft_wrap=one_line())

    deployer = canary.AutomationDeployer(project, log)
    deployer.ready(stack)  # before the stack file is edited
    if verb == "run":
        from llm_mesh.ops.artifacts import canary_problems

        # The canary's artifacts first: no step on weights that are not there.
        problems = canary_problems(config, stack, model)
        for line in problems:
            cli.err.print(Text(f"error: {line}", style="red"))
        if problems:
            return EXIT_FINDINGS

    def progression(metrics: str = "", max_checks: int = 100) -> canary.Progression:
        """Metrics are read by `run` alone; the other verbs take one step."""
        load = partial(stack_config, project, stack)  # again after each edit of the stack file
        source = canary.PrometheusApi(metrics)
        return canary.Progression(project, stack, model, load, deployer, source, log, max_checks=max_checks)

    if split.canary is None:  # a promotion a crash left unfinished: finish it
        progression().settle()
        return 0
    if verb == "advance":
        target = canary.advanced(split, config.canary, args.step)
        if args.step is not None and target < split.weight + args.step:
            log(f"--step {args.step} capped: canary.maxWeight is {config.canary.max_weight}%")
        progression().step_to(target)
        return 0
    if verb == "rollback":
        progression().rollback()
        return 0
    if verb == "promote":
        progression().promote()
        return 0
    outcome = progression(args.prometheus_url or config.canary.prometheus_url, args.max_checks).run()
    cli.out.print(f"{outcome.result}: canary {model} at {outcome.weight}%")
    return 0 if outcome.result == "promoted" else EXIT_FINDINGS


def _instant(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a time as RFC 3339 (2026-12-02T14:05:00Z) or unix seconds"
        ) from None


def _check(config: StackConfig, stack: str, model: str, prometheus_url: str, at: float | None) -> int:
    """Each figure, its limit and the verdict; 0 pass, 1 fail, EXIT_UNDECIDED when too little traffic to judge."""
    from llm_mesh.ops import canary

    source = canary.PrometheusApi(prometheus_url, clock=None if at is None else lambda: at)
    result = canary.analyse(source, config, model, config.canary)
    if result.unmeasured is not None:  # an outage, not a verdict on the canary
        raise InputError(f"{result.unmeasured}; nothing was judged")
    when = "" if at is None else f" up to {datetime.fromtimestamp(at, UTC).isoformat()}"
    cli.out.print(f"canary {model} in {stack}, {config.canary.window}{when} (Prometheus API {prometheus_url}):")
    for measure in result.measures:
        mark = "ok" if measure.ok else "FAIL"
        cli.out.print(Text(f"  {measure.name}: {measure.value}  (limit {measure.limit})  {mark}"), soft_wrap=one_line())
    for reason in result.reasons if not result.measures else []:  # no measure taken: why
        cli.out.print(Text(f"  {reason}"), soft_wrap=one_line())
    verdict = {"pass": "pass", "fail": "fail", "no-data": "no decision: too little traffic to judge"}[result.verdict]
    cli.out.print(f"verdict: {verdict}")
    return {"pass": 0, "fail": EXIT_FINDINGS}.get(result.verdict, EXIT_UNDECIDED)


CANARY = Command(_arguments, _canary)
