"""The errors a command reports as a single line: an input it cannot use (exit code 2), or a stop with a code
of its own."""

import difflib
from collections.abc import Iterable


class InputError(ValueError):
    """A file, path, version, setting or endpoint the command cannot use; the message names it and the fix."""


class CommandError(Exception):
    """A command cannot go on (a store it cannot read, a push refused); `code` is its exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def read_problem(what: str, path: object, error: Exception) -> InputError:
    """One line for a file that cannot be read or parsed, naming which input it is and what to do."""
    if isinstance(error, FileNotFoundError):
        return InputError(f"{what} {path}: no such file; check the path")
    if isinstance(error, IsADirectoryError):
        return InputError(f"{what} {path}: is a folder; name the file in it")
    if isinstance(error, PermissionError):
        return InputError(f"{what} {path}: cannot be read (permission denied)")
    if isinstance(error, ValueError):  # json.JSONDecodeError
        return InputError(f"{what} {path}: not JSON ({error}); {JSON_HINTS.get(what, 'write it as a JSON object')}")
    return InputError(f"{what} {path}: {error}")


JSON_HINTS = {
    "engine document": "write it with `pulumi preview --json`, `pulumi stack export` or `llm-mesh preview --json`",
    "policy config": 'write it as for `pulumi preview --policy-pack-config`, e.g. {"rule-name": "mandatory"}',
}


def did_you_mean(word: object, known: Iterable[str]) -> str:
    """`did you mean 'config'? ` for the known name closest to a misspelled one, or nothing."""
    close = difflib.get_close_matches(str(word), list(known), n=1)
    return f"did you mean {close[0]!r}? " if close else ""
