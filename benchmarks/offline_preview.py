"""How long the offline preview takes, next to the SDK's own floor for the same number of resources.

Prints, for the prod stack and for a synthetic stack serving 50 models (each on its own GPU pool):
resources registered, median wall time over --runs runs, peak memory, resources per second, and the ratio
to the floor: the bare cost of registering as many resources with the SDK's mock runtime and no program.
Every measurement runs in a fresh process, because the SDK's mocks are process-global.

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
        result = (
            child_preview(rest[0], rest[1] if len(rest) > 1 else "") if kind == "preview" else child_floor(int(rest[0]))
        )
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as folder:
        synthetic_stack(Path(folder))
        cases = [("prod stack", ["preview", "prod"]), (f"{SYNTHETIC_MODELS} models", ["preview", "synthetic", folder])]
        print(f"offline preview, median of {options.runs} runs, each in a fresh process")
        header = ("case", "resources", "cold s", "warm s", "res/s", "peak MiB", "floor s", "warm/floor")
        print("{:<12}{:>10}{:>9}{:>8}{:>8}{:>10}{:>9}{:>11}".format(*header))
        for label, args in cases:
            preview = measure(args, options.runs)
            floor = measure(["floor", str(preview["resources"])], options.runs)
            print(
                f"{label:<12}{preview['resources']:>10}{preview['seconds']:>9.3f}{preview['run_seconds']:>8.3f}"
                f"{preview['resources'] / preview['run_seconds']:>8.0f}{preview['peak_mib']:>10.0f}"
                f"{floor['seconds']:>9.3f}{preview['run_seconds'] / floor['seconds']:>11.1f}"
            )
        print("cold: first run in a fresh process, SDK modules imported on the way; warm: a second run in it")
        print("floor: as many resources registered with the stock MockMonitor and no program")
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
