"""What every command's output shares: line wrapping, paths as the user gave them, files it may replace."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from llm_mesh import cli
from llm_mesh.errors import InputError

# Below this width the full type tokens do not fit beside the names: the plan shows each kind by its last part.
WIDE_PLAN_COLUMNS = 140


def one_line() -> bool:
    """Long lines stay whole where there is room or output is piped (CI logs, PR comments), and are wrapped at
    word boundaries on a narrow terminal."""
    return cli.out.width >= WIDE_PLAN_COLUMNS


def relative(path: Path) -> str:
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


class OutputPathError(InputError):
    """An output path the command cannot write to."""


def writable(path: Path, option: str, ours: Callable[[str], bool]) -> None:
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


def url_with_scheme(example: str) -> Callable[[str], str]:
    """An argparse type for an endpoint: refused, before anything runs, without http:// or https://."""

    def check(text: str) -> str:
        if not text.startswith(("http://", "https://")):
            raise argparse.ArgumentTypeError(f"{text!r}: a URL with its scheme, e.g. {example}")
        return text

    return check
