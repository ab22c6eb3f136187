"""`make mutate`: mutation testing (mutmut) of the decision modules and the policy rules, and its score.

    .venv/bin/python tools/mutate.py [FILE ...]     # default: the files [tool.mutmut] only_mutate names
    .venv/bin/python tools/mutate.py --survivors    # the last run's survivors again, against today's tests

mutmut imports each mutated copy under the module name it derives from the copy's path, and switches a mutant on
only inside a module of that name. The policy rules are imported as `llm_mesh_policies` but live in
policies/llm_mesh_policies (pyproject's package-dir): run in place, mutmut would name them
`policies.llm_mesh_policies.*`, the tests would import the unmutated originals through the editable install, and
no policy mutant would ever be switched on. So this lays the project out afresh in .mutmut/ as it is imported —
llm_mesh/ and llm_mesh_policies/ side by side, policies/ with the pack's other files — runs `mutmut run` there
(each mutant against the tests that reach its function, as many at once as there are cores), and prints
killed / total with the survivors of each module. .mutmut/survivors.diff shows what each survivor changed.

mutmut leaves decorated functions alone, but for @classmethod and @staticmethod alone: pydantic's
@field_validator and @model_validator bodies and @property bodies are not mutated.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter, defaultdict
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutmut"
# Where the policy package lives, and where it is imported from (pyproject's package-dir).
POLICY_SOURCE, POLICY_PACKAGE = "policies/llm_mesh_policies", "llm_mesh_policies"
# mutmut's exit codes, as its stats module reads them (3: pytest's internal error, a kill).
STATUS: dict[int | None, str] = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests"}
STATUS |= {34: "skipped", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout"}
STATUS |= {37: "type check", None: "not checked"}
COLUMNS = ("killed", "survived", "no tests", "timeout")


def staged(path: str) -> str:
    """A file's path in .mutmut/ (and in mutmut's names) from its path in the project."""
    return POLICY_PACKAGE + path.removeprefix(POLICY_SOURCE) if path.startswith(POLICY_SOURCE + "/") else path


def project_path(path: str) -> str:
    """The inverse of staged()."""
    return POLICY_SOURCE + path.removeprefix(POLICY_PACKAGE) if path.startswith(POLICY_PACKAGE + "/") else path


def project_files() -> list[str]:
    """What the tests may read: the tracked files and the new ones that are not ignored, as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(name for name in listed.split("\0") if name and (ROOT / name).is_file())


def lay_out(settings: dict[str, object], only_mutate: list[str]) -> None:
    """.mutmut/ afresh: the project with the policy package at the top level, and mutmut's settings for it."""
    shutil.rmtree(WORK, ignore_errors=True)
    files = project_files()
    for name in files:
        target = WORK / staged(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    sources = [str(path) for path in settings["source_paths"]]  # type: ignore[attr-defined]
    # mutmut copies the sources itself and mutates them; everything else is copied as it is. The pack's own
    # files go one by one, so that mutants/policies/llm_mesh_policies stays the link to the mutated package.
    tops = sorted({staged(name).split("/")[0] for name in files} - {*sources, "policies"})
    also_copy = tops + sorted(name for name in files if name.startswith("policies/") and staged(name) == name)
    mutants = WORK / "mutants"
    (mutants / "policies").mkdir(parents=True)
    # The pack as the Pulumi CLI starts it (policies/__main__.py, tests/policies/test_policy_grpc.py) imports the
    # mutants too.
    (mutants / POLICY_SOURCE).symlink_to(Path("..") / POLICY_PACKAGE, target_is_directory=True)
    # Checkov's venv (tests/whole/test_checkov.py) and the shared samples beside the checkout, where the tests look.
    (mutants / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    if (ROOT.parent / "shared").is_dir():
        (WORK / "shared").symlink_to(ROOT.parent / "shared", target_is_directory=True)
    effective = settings | {"only_mutate": only_mutate, "also_copy": also_copy}
    table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in effective.items())
    pyproject = (ROOT / "pyproject.toml").read_text()
    pyproject = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", pyproject)
    (WORK / "pyproject.toml").write_text(pyproject.rstrip("\n") + "\n\n[tool.mutmut]\n" + table + "\n")
    # A mutant's trampoline reads mutmut's settings from the folder its process runs in: the pack runs in policies/.
    (mutants / "policies" / "pyproject.toml").write_text("[tool.mutmut]\n" + table + "\n")


def results(only_mutate: list[str]) -> dict[str, dict[str, int | None]]:
    """Each mutated file's mutants and their exit codes, from mutmut's .meta files."""
    found = {}
    for meta in sorted((WORK / "mutants").glob("*/**/*.py.meta")):  # not into the link policies/llm_mesh_policies
        path = meta.relative_to(WORK / "mutants").as_posix().removesuffix(".meta")
        if any(fnmatch(path, pattern) for pattern in only_mutate):
            found[project_path(path)] = json.loads(meta.read_text())["exit_code_by_key"]
    return found


def write_diffs(survivors: list[tuple[str, str]]) -> Path:
    """What each survivor changed, one diff after another, in .mutmut/survivors.diff."""
    os.chdir(WORK)  # mutmut reads its settings and its mutants from the folder it runs in
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    out = WORK / "survivors.diff"
    with out.open("w") as diffs:
        for path, name in survivors:
            diffs.write(f"# {name}\n{get_diff_for_mutant(name, path=staged(path))}\n")
    return out


def report(found: dict[str, dict[str, int | None]], elapsed: float) -> None:
    """killed / total, a line for each module, and the survivors of each function."""
    counts = {path: Counter(STATUS.get(code, "other") for code in codes.values()) for path, codes in found.items()}
    total = Counter[str]()
    for count in counts.values():
        total.update(count)
    width = max(len(path) for path in counts)
    print(f"\n{'module':<{width}}  {'mutants':>7}  " + "  ".join(f"{c:>8}" for c in COLUMNS) + "     score")
    for path, count in [*counts.items(), ("all", total)]:
        mutants = sum(count.values()) - count["not checked"]
        score = f"{100 * count['killed'] / mutants:5.1f}%" if mutants else "    -"
        cells = "  ".join(f"{count[c]:>8}" for c in COLUMNS)
        print(f"{path:<{width}}  {mutants:>7}  {cells}    {score}")
    others = {status: n for status, n in total.items() if status not in COLUMNS}
    if others:
        print("also:", ", ".join(f"{n} {status}" for status, n in sorted(others.items())))
    survivors = [(path, name) for path, codes in found.items() for name, code in codes.items() if code == 0]
    if survivors:
        print("\nsurvivors, by function (mutant numbers):")
        by_function: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for path, name in survivors:
            function, _, number = name.rpartition("__mutmut_")
            by_function[path][function.removeprefix(staged(path)[:-3].replace("/", ".") + ".")].append(number)
        for path, functions in by_function.items():
            print(f"  {path}")
            for function, numbers in functions.items():
                print(f"    {function}: {' '.join(sorted(numbers, key=int))}")
        print(f"what each one changed: {write_diffs(survivors).relative_to(ROOT)}")
    minutes, seconds = divmod(round(elapsed), 60)
    killed, checked = total["killed"], sum(total.values()) - total["not checked"]
    score = f"{100 * killed / checked:.1f}%" if checked else "-"
    unchecked = f", {total['not checked']} not checked (run interrupted)" if total["not checked"] else ""
    print(f"\nmutation score: {killed} killed / {checked} mutants = {score}{unchecked} ({minutes}m{seconds:02d}s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", help="project paths to mutate (default: [tool.mutmut] only_mutate)")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2, help="mutants tested at once")
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="test only the last run's survivors again, against the project's tests as they are now (the sources "
        "stay as they were in that run): after adding tests for them",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    command = [str(Path(sys.executable).with_name("mutmut")), "run", "--max-children", str(args.max_children)]
    survivors: list[str] = []
    if args.survivors:
        if args.files or not (WORK / "pyproject.toml").is_file():
            parser.error("--survivors takes no files, and needs a run before it")
        only_mutate = tomllib.loads((WORK / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
        survivors = [name for codes in results(only_mutate).values() for name, code in codes.items() if code == 0]
        for folder in (WORK / "tests", WORK / "mutants" / "tests"):  # mutmut copies the first to the second
            shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(ROOT / "tests", WORK / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        command += survivors
    else:
        settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
        only_mutate = [staged(path) for path in args.files] or list(settings["only_mutate"])
        for path in args.files:
            if not path.endswith(".py") or not (ROOT / path).is_file():
                parser.error(f"{path}: not a Python file of the project")
            if not any(staged(path).startswith(f"{source}/") for source in settings["source_paths"]):
                parser.error(f"{path}: not under [tool.mutmut] source_paths ({', '.join(settings['source_paths'])})")
        lay_out(settings, only_mutate)
    # The tests that start `llm-mesh` or the policy pack in a process of their own import the mutants too.
    env = os.environ | {"PYTHONPATH": str(WORK / "mutants")}
    nothing_to_test = args.survivors and not survivors
    returncode = 0 if nothing_to_test else subprocess.run(command, cwd=WORK, env=env).returncode
    found = results(only_mutate)
    if returncode != 0 or not found:
        print(f"mutmut run exited {returncode} with {len(found)} files' results", file=sys.stderr)
        return returncode or 1
    report(found, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
