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
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
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

    def key(urn: str) -> tuple[str, str]:
        *_, qualified_type, name = urn.split("::")
        return qualified_type.split("$")[-1], name

    def program() -> None:
        declared: dict[tuple[str, str], pulumi.Resource] = {}
        for r in registrations:
            if r.type == STACK_TYPE:
                continue
            provider = declared.get(key(r.provider.rsplit("::", 1)[0])) if r.provider else None
            default_version = r.provider.split("::default_")[-1].split("::")[0] if "::default_" in r.provider else ""
            opts = pulumi.ResourceOptions(
                parent=declared.get(key(r.parent)),
                version=default_version.replace("_", ".") or None,
                provider=provider if isinstance(provider, pulumi.ProviderResource) else None,
                depends_on=[declared[key(urn)] for urn in r.dependencies if key(urn) in declared],
                protect=r.protect,
            )
            if r.type.startswith("pulumi:providers:"):
                package = r.type.split(":")[-1]
                declared[(r.type, r.name)] = pulumi.ProviderResource(package, r.name, dict(r.inputs), opts)
                continue
            if not r.custom:
                declared[(r.type, r.name)] = pulumi.ComponentResource(r.type, r.name, None, opts)
                continue
            declared[(r.type, r.name)] = replay_resource(r.type, r.name, r.inputs, opts)

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


def replay_resource(type_token: str, name: str, inputs: dict[str, Any], opts: Any) -> Any:
    """Construct the real generated class with the recorded inputs as keyword arguments (its own option
    handling, aliases and output properties included); wire values are passed as they are."""
    import inspect

    import pulumi

    from llm_mesh.engine.run import _resource_class

    cls = _resource_class(type_token)
    if cls is None:
        return pulumi.CustomResource(type_token, name, dict(inputs), opts)
    parameters = list(inspect.signature(cls._internal_init).parameters)[3:]  # type: ignore[attr-defined]
    by_wire = {_camel(p): p for p in parameters if p != "__props__"}
    unknown = set(inputs) - set(by_wire)
    if unknown:
        raise ValueError(f"{type_token}: no keyword argument for {sorted(unknown)}")
    return cls(name, opts=opts, **{by_wire[k]: v for k, v in inputs.items()})


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def resource_usage_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_floor(count: int) -> dict[str, Any]:
    """Register `count` custom resources (plus the stack) with the stock MockMonitor and nothing else."""
    import pulumi
    from pulumi.runtime.stack import run_in_stack
    from pulumi.runtime.sync_await import _sync_await

    class Echo(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            return f"{args.name}-id", args.inputs

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
            return {}, None

    pulumi.runtime.set_mocks(Echo(), project="llm-mesh", stack="floor", preview=False)
    pulumi.runtime.settings.set_root_resource(None)  # type: ignore[arg-type]

    def program() -> None:
        for i in range(count - 1):
            pulumi.CustomResource("bench:index:Thing", f"thing-{i}", {"index": i, "labels": {"a": "b"}})

    started = time.perf_counter()
    _sync_await(run_in_stack(program))
    return {
        "seconds": time.perf_counter() - started,
        "warm_seconds": time.perf_counter() - started,
        "resources": count,
        "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def measure(args: list[str], runs: int) -> dict[str, Any]:
    results = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "seconds": statistics.median(r["seconds"] for r in results),
        "run_seconds": statistics.median(r["warm_seconds"] for r in results),
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
        children = {"preview": child_preview, "replay": child_replay}
        if kind == "floor":
            result = child_floor(int(rest[0]))
        else:
            result = children[kind](rest[0], rest[1] if len(rest) > 1 else "")
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as folder:
        synthetic_stack(Path(folder))
        cases = [("prod stack", ["prod"]), (f"{SYNTHETIC_MODELS} models", ["synthetic", folder])]
        print(f"offline preview, median of {options.runs} runs, each in a fresh process")
        header = ("case", "resources", "cold s", "warm s", "res/s", "MiB", "bare s", "plan s", "/bare", "/plan")
        print("{:<11}{:>10}{:>7}{:>7}{:>6}{:>5}{:>7}{:>7}{:>6}{:>6}".format(*header))
        for label, args in cases:
            preview = measure(["preview", *args], options.runs)
            bare = measure(["floor", str(preview["resources"])], options.runs)
            plan = measure(["replay", *args], options.runs)
            warm = preview["run_seconds"]
            print(
                f"{label:<11}{preview['resources']:>10}{preview['seconds']:>7.2f}{warm:>7.2f}"
                f"{preview['resources'] / warm:>6.0f}{preview['peak_mib']:>5.0f}{bare['seconds']:>7.2f}"
                f"{plan['seconds']:>7.2f}{warm / bare['seconds']:>6.1f}{warm / plan['seconds']:>6.1f}"
            )
        print("cold: first run in a fresh process, SDK modules imported on the way; warm: a second run in it")
        print("bare floor: as many resources of one made-up type, two inputs each, the stock MockMonitor, no program")
        print("plan floor: the same resources as the preview (real classes, inputs, parents, providers,")
        print("  dependencies) registered again through the offline engine with no program around them")
    review_seconds = [measure_review() for _ in range(options.runs)]
    print(
        f"review of dev + staging + prod at two refs (a commit that moves the canary weight): "
        f"median {statistics.median(review_seconds):.1f} s of {options.runs} runs (target: under 15 s on 2 cores)"
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
