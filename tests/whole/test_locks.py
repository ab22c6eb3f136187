"""The lock files: complete, hashed, up to date with what requirements/*.in asks for, and one version of each
package across the environments that share .venv (so `make preview` runs what `make test` tested)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)
# Each lock, and what it is compiled from (`make lock`).
LOCKS = {
    "requirements.txt": "requirements/program.in",
    "requirements/preview.txt": "requirements/preview.in",
    "requirements/dev.txt": "requirements/dev.in",
    "requirements/checkov.txt": "requirements/checkov.in",
    "policies/requirements.txt": "requirements/policy-pack.in",
}
# Locks installed into .venv beside dev.txt, or built from a subset of it: same versions as dev.txt.
SUBSETS_OF_DEV = ("requirements.txt", "requirements/preview.txt", "policies/requirements.txt")


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    return {normalised(name): version for name, version in PIN.findall(text)}


def asked_for(path: Path) -> dict[str, str]:
    """Direct pins of an .in file, following its `-r` includes."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("-r "):
            found |= asked_for(path.parent / line.removeprefix("-r ").strip())
    return found | pins(path.read_text())


def test_pins_read_the_way_uv_writes_them() -> None:
    text = "moto[s3,server]==5.2.5 \\\n    --hash=sha256:ab\nPyYAML==6.0.3 ; sys_platform != 'x'\n"
    assert pins(text) == {"moto": "5.2.5", "pyyaml": "6.0.3"}


@pytest.mark.parametrize("lock", LOCKS)
def test_every_lock_pins_what_its_input_asks_for(lock: str) -> None:
    locked = pins((ROOT / lock).read_text())
    wanted = asked_for(ROOT / LOCKS[lock])
    stale = {name: (version, locked.get(name)) for name, version in wanted.items() if locked.get(name) != version}
    assert wanted and not stale, f"{lock} is stale against {LOCKS[lock]} (asked, locked): {stale}; run `make lock`"


@pytest.mark.parametrize("lock", LOCKS)
def test_every_pin_carries_its_hashes(lock: str) -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text())
    unhashed = [block.split()[0] for block in blocks if PIN.match(block) and "--hash=sha256:" not in block]
    assert not unhashed


@pytest.mark.parametrize("lock", SUBSETS_OF_DEV)
def test_shared_locks_agree_with_the_dev_lock(lock: str) -> None:
    dev = pins((ROOT / "requirements/dev.txt").read_text())
    locked = pins((ROOT / lock).read_text())
    differ = {name: (version, dev.get(name)) for name, version in locked.items() if dev.get(name) != version}
    assert not differ, f"{lock} and requirements/dev.txt differ (theirs, dev's): {differ}; run `make lock`"


def test_the_makefile_installs_the_locks_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = re.findall(r"\$\(PIP_INSTALL\) -r (\S+)", makefile)
    assert installs == ["requirements/preview.txt", "requirements/dev.txt", "requirements/checkov.txt"]
    assert re.search(r"^PIP_INSTALL = .*--require-hashes", makefile, re.MULTILINE)
