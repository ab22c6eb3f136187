"""How long the offline preview takes, next to the SDK's own floor for the same number of resources.

Prints, for the prod stack and for a synthetic stack serving 50 models (each on its own GPU pool):
resources registered, median wall time over --runs runs, peak memory, resources per second, and the ratio
to two floors. The bare floor registers as many resources of a made-up type with two inputs each through
the SDK's stock MockMonitor: what the SDK costs per resource at the least. The plan floor registers the
preview's own resources again (the real generated classes, the recorded inputs, parents, providers and
dependencies) through the offline engine with no program: what these resources cost the SDK, so that the
ratio to it is the program's own overhead (config, components, Output chains, the preview document).
Every measurement runs in a fresh process, because the SDK's mocks are process-global. Then the review of
three stacks at two refs is timed.

    .venv/bin/python benchmarks/offline_preview.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SYNTHETIC_MODELS = 50


def synthetic_stack(folder: Path) -> None:
    """A dev stack that serves SYNTHETIC_MODELS models, each with a GPU pool of its own."""
    pools = [
        {"name": f"l4-{i}", "machineType": "g2-standard-8", "maxNodes": 2, "spot": True}
        for i in range(SYNTHETIC_MODELS)
    ]
    files = [{"path": "config.json"}, {"path": "model.safetensors"}]
    models = [
        {
            "name": f"model-{i}",
            "shape": {"preset": "llama-3.1-8b"},
            "contextLength": 8192,
            "gpuPool": f"l4-{i}",
            "stable": {"version": "v1", "files": files},
            "canary": {"version": "v2", "files": files},
            "canaryWeight": 10,
        }
        for i in range(SYNTHETIC_MODELS)
    ]
    config = {
        "llm-mesh:environment": "dev",
        "llm-mesh:gcp": {"project": "llm-mesh-bench", "zones": ["us-central1-a"]},
        "llm-mesh:cluster": {"regional": False, "deletionProtection": False},
        "llm-mesh:gpuPools": pools,
        "llm-mesh:models": models,
    }
    (folder / "Pulumi.synthetic.yaml").write_text(json.dumps({"config": config}))  # JSON is YAML


def child_preview(stack: str, config_dir: str) -> dict[str, Any]:
    """The preview twice in one process: cold (with every module the program imports, eagerly or lazily)
    and warm (the program's own cost, what a second stack in the same process would pay)."""
    from llm_mesh.engine.document import preview_document
    from llm_mesh.engine.run import run_program
    from llm_mesh.engine.stackfile import Project, read_stack_settings

    found = Project.find(ROOT)
    project = Project(found.root, found.name, Path(config_dir) if config_dir else found.stack_config_dir)
    settings = read_stack_settings(project, stack)
    timings = []
    for _ in range(2):
        asyncio.set_event_loop(asyncio.new_event_loop())
        started = time.perf_counter()
        document = preview_document(run_program(project, stack, settings))
        timings.append(time.perf_counter() - started)
    return {
        "seconds": timings[0],
        "warm_seconds": timings[1],
        "resources": len(document["steps"]),
        "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def child_replay(stack: str, config_dir: str) -> dict[str, Any]:
    """The SDK's own cost for this plan: every resource the preview registered (same type, name, parent,
    inputs and the real class's output properties) registered again through the same engine, with no program:
    no config, no components' code, no Output chains of the program's own."""
    import pulumi

    from llm_mesh.engine.run import STACK_TYPE, record, run_program
    from llm_mesh.engine.stackfile import Project, StackSettings, read_stack_settings

    found = Project.find(ROOT)
    project = Project(found.root, found.name, Path(config_dir) if config_dir else found.stack_config_dir)
    asyncio.set_event_loop(asyncio.new_event_loop())
    registrations = [r for r in run_program(project, stack, read_stack_settings(project, stack)).resources]

    steps = [_replay_step(r) for r in registrations if r.type != STACK_TYPE]  # decided before the clock runs

    def program() -> None:
        declared: dict[tuple[str, str], pulumi.Resource] = {}
        for step in steps:
            provider = declared.get(step.provider) if step.provider else None
            opts = pulumi.ResourceOptions(
                parent=declared.get(step.parent),
                version=step.version,
                provider=provider if isinstance(provider, pulumi.ProviderResource) else None,
                depends_on=[declared[k] for k in step.dependencies if k in declared],
                protect=step.protect,
            )
            declared[step.key] = step.declare(opts)

    timings = []
    for _ in range(2):
        asyncio.set_event_loop(asyncio.new_event_loop())
        started = time.perf_counter()
        recording = record(program, project.name, stack, StackSettings({}))
        timings.append(time.perf_counter() - started)
    if _signature(recording.resources) != _signature(registrations):
        raise SystemExit("the replay registered other resources than the preview: the plan floor would be wrong")
    return {
        "seconds": timings[1],
        "warm_seconds": timings[1],
        "resources": len(recording.resources),
        "peak_kib": resource_usage_kib(),
    }


def _signature(registrations: list[Any]) -> dict[str, tuple[Any, ...]]:
    return {r.urn: (r.inputs, r.provider, sorted(r.dependencies), r.parent, r.protect) for r in registrations}


@dataclass(frozen=True)
class ReplayStep:
    key: tuple[str, str]
    parent: tuple[str, str]
    provider: tuple[str, str] | None
    dependencies: tuple[tuple[str, str], ...]
    version: str | None
    protect: bool
    declare: Callable[[Any], Any]  # ResourceOptions -> the resource


def _urn_key(urn: str) -> tuple[str, str]:
    *_, qualified_type, name = urn.split("::")
    return qualified_type.split("$")[-1], name


def _replay_step(r: Any) -> ReplayStep:
    """How to declare one recorded resource again: the real generated class with the recorded inputs as its
    keyword arguments (its own option handling, aliases and output properties included)."""
    import pulumi

    from llm_mesh.engine.run import _resource_class
    from llm_mesh.engine.sdk_private import init_parameters

    inputs = dict(r.inputs)
    declare: Callable[[Any], Any]
    if r.type.startswith("pulumi:providers:"):
        package = r.type.split(":")[-1]
        declare = functools.partial(pulumi.ProviderResource, package, r.name, inputs)
    elif not r.custom:
        declare = functools.partial(pulumi.ComponentResource, r.type, r.name, None)
    elif (cls := _resource_class(r.type)) is None:
        declare = functools.partial(pulumi.CustomResource, r.type, r.name, inputs)
    else:
        parameters = init_parameters(cls)[3:]
        by_wire = {_camel(p): p for p in parameters if p != "__props__"}
        unknown = set(inputs) - set(by_wire)
        if unknown:
            raise SystemExit(f"{r.type}: no keyword argument for {sorted(unknown)}")
        kwargs = {by_wire[k]: v for k, v in inputs.items()}
        declare = lambda opts: cls(r.name, opts=opts, **kwargs)  # noqa: E731
    default = r.provider.split("::default_")[-1].split("::")[0] if "::default_" in r.provider else ""
    return ReplayStep(
        key=(r.type, r.name),
        parent=_urn_key(r.parent) if r.parent else ("", ""),
        provider=_urn_key(r.provider.rsplit("::", 1)[0]) if r.provider else None,
        dependencies=tuple(_urn_key(urn) for urn in r.dependencies),
        version=default.replace("_", ".") or None,
        protect=r.protect,
        declare=declare,
    )


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def resource_usage_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_floor(count: int, engine: bool = False) -> dict[str, Any]:
    """Register `count` custom resources (the stack included) of a made-up type with two inputs each, and no
    program around them: through the SDK's stock MockMonitor, or through the offline engine (`engine`)."""
    import pulumi

    def program() -> None:
        for i in range(count - 1):
            pulumi.CustomResource("bench:index:Thing", f"thing-{i}", {"index": i, "labels": {"a": "b"}})

    if engine:
        from llm_mesh.engine.run import record
        from llm_mesh.engine.stackfile import StackSettings

        asyncio.set_event_loop(asyncio.new_event_loop())
        started = time.perf_counter()
        record(program, "llm-mesh", "floor", StackSettings({}))
        return {"seconds": time.perf_counter() - started, "resources": count, "peak_kib": resource_usage_kib()}

    from pulumi.runtime.stack import run_in_stack

    from llm_mesh.engine.sdk_private import sync_await

    class Echo(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            return f"{args.name}-id", args.inputs

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
            return {}, None

    pulumi.runtime.set_mocks(Echo(), project="llm-mesh", stack="floor", preview=False)
    pulumi.runtime.settings.set_root_resource(None)  # type: ignore[arg-type]
    started = time.perf_counter()
    sync_await(run_in_stack(program))
    return {"seconds": time.perf_counter() - started, "resources": count, "peak_kib": resource_usage_kib()}


def measure(args: list[str], runs: int) -> dict[str, Any]:
    """The fastest of `runs` fresh processes: the least disturbed by whatever else the machine was doing."""
    results = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "seconds": min(r["seconds"] for r in results),
        "warm_seconds": min(r.get("warm_seconds", r["seconds"]) for r in results),
        "resources": results[0]["resources"],
        "peak_mib": max(r["peak_kib"] for r in results) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs="+")
    options = parser.parse_args()
    if options.child:
        kind, *rest = options.child
        if kind in ("floor", "engine-floor"):
            result = child_floor(int(rest[0]), engine=kind == "engine-floor")
        else:
            result = {"preview": child_preview, "replay": child_replay}[kind](rest[0], rest[1] if rest[1:] else "")
        print(json.dumps(result))
        return

    runs = f"{options.runs} run" + ("s" if options.runs != 1 else "")
    print(f"offline preview: the fastest of {runs}, each in a fresh process (run it on an otherwise idle machine)")
    with tempfile.TemporaryDirectory() as folder:
        synthetic_stack(Path(folder))
        for label, args in (("prod stack", ["prod"]), (f"{SYNTHETIC_MODELS} models", ["synthetic", folder])):
            preview = measure(["preview", *args], options.runs)
            count = str(preview["resources"])
            warm = preview["warm_seconds"]
            print(
                f"{label}: {preview['resources']} resources; cold {preview['seconds']:.2f} s, "
                f"warm {warm:.2f} s ({preview['resources'] / warm:.0f} resources/s), peak {preview['peak_mib']:.0f} MiB"
            )
            floors = (
                ("bare floor, the SDK's stock mock monitor", ["floor", count]),
                ("bare floor, the offline engine", ["engine-floor", count]),
                ("plan floor, the offline engine", ["replay", *args]),
            )
            for name, floor_args in floors:
                floor = measure(floor_args, options.runs)["seconds"]
                note = "  (not below the preview: noise, or the replay's own cost)" if floor >= warm else ""
                print(f"  {name:<42}{floor:>6.2f} s   warm preview / floor {warm / floor:>4.1f}{note}")
    print("cold: a first run in a fresh process, importing the SDK modules on the way; warm: a second run in it")
    print("bare floor: as many resources of a made-up type with two inputs each, and no program")
    print("plan floor: the preview's own resources again (real classes, inputs, parents, providers, dependencies)")
    print("  with no program: warm / plan floor is the program's own overhead")
    review_seconds = min(measure_review() for _ in range(options.runs))
    print(
        f"review of dev + staging + prod at two refs (a commit that moves the canary weight): {review_seconds:.1f} s, "
        f"the fastest of {runs} (target: under 15 s on 2 cores)"
    )


def measure_review() -> float:
    """`llm-mesh review --base HEAD~1` in a throwaway clone whose last commit moves prod's canary weight."""
    import shutil

    with tempfile.TemporaryDirectory() as folder:
        repo = Path(folder) / "repo"
        repo.mkdir()
        for name in ("Pulumi.yaml", "__main__.py"):
            shutil.copy(ROOT / name, repo / name)
        for sub in ("components", "stacks", "llm_mesh"):
            shutil.copytree(ROOT / sub, repo / sub, ignore=shutil.ignore_patterns("__pycache__"))
        who = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]

        def git(*args: str) -> None:
            subprocess.run(["git", "-C", str(repo), *who, *args], check=True, capture_output=True)

        git("init", "--quiet")
        git("add", ".")
        git("commit", "--quiet", "-m", "base")
        prod = repo / "stacks" / "Pulumi.prod.yaml"
        prod.write_text(prod.read_text().replace("canaryWeight: 10", "canaryWeight: 20"))
        git("commit", "--quiet", "-am", "canary")
        started = time.perf_counter()
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "llm-mesh"), "--project", str(repo), "review", "--base", "HEAD~1"],
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - started


if __name__ == "__main__":
    main()
