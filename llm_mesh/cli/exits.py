"""Exit codes, and the one place that turns what a command raised into its exit code and the lines it prints."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.text import Text

from llm_mesh import cli
from llm_mesh.cli.output import relative
from llm_mesh.errors import CommandError, InputError

# Exit codes, the same for every command (README: "Exit codes").
EXIT_FINDINGS = 1  # the command ran and found problems: validate errors, mandatory violations, missing artifacts
EXIT_UNUSABLE = 2  # an input it cannot use: a file, a config mistake, a path, credentials, an endpoint, a version
EXIT_PROGRAM_FAILED = 3  # the Pulumi program raised on a valid config: a bug to report
EXIT_UNDECIDED = 4  # `canary check`: too little traffic to judge the canary, neither pass nor fail
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM, as shells report an interrupted command
EXIT_BROKEN_PIPE = 141  # the output's reader closed it, as shells report a command ended by SIGPIPE


class StackConfigInvalid(Exception):
    """A stack file whose config does not validate: every problem is a line of its own."""

    def __init__(self, stack_file: Path, problems: list[str]):
        super().__init__(f"{stack_file}: {len(problems)} config problems")
        self.stack_file = stack_file
        self.problems = problems


class ProgramFailed(Exception):
    """The Pulumi program raised on a valid config: a bug, reported without the traceback."""

    def __init__(self, cause: Exception):
        super().__init__(f"{type(cause).__name__}: {cause}")


@contextmanager
def config_problems_of(stack_file: Path) -> Iterator[None]:
    """A ConfigError raised inside is reported as this stack file's problems, all of them."""
    # Imported here: the config schema is not needed to print help or to diff two documents.
    from llm_mesh.plan.config import ConfigError

    try:
        yield
    except ConfigError as exc:
        raise StackConfigInvalid(stack_file, exc.problems) from None


def exit_code_of(command: str | None, run: Callable[[], int]) -> int:
    """Run a command; what it raised is printed here, once, and becomes its exit code."""
    try:
        with _terminate_as_interrupt():
            return run()
    except KeyboardInterrupt:
        # Ctrl-C or a CI job cancelled: temporary worktrees and folders are gone by now (their `finally`s ran).
        _error_line("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`llm-mesh diff a b | head`): stop quietly, as tools killed by SIGPIPE do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_BROKEN_PIPE
    except ModuleNotFoundError as exc:
        # `make preview` installs only what the preview needs; the other commands need requirements/dev.txt.
        _error_line(
            f"error: `llm-mesh {command}` needs {exc.name}, which `make preview` does not install; run "
            "`make test` once, or `.venv/bin/pip install -r requirements/dev.txt`"
        )
        return EXIT_UNUSABLE
    except StackConfigInvalid as exc:
        for problem in exc.problems:
            _error_line(f"error: {relative(exc.stack_file)}: {problem}")
        return EXIT_UNUSABLE
    except ProgramFailed as exc:
        _error_line(f"error: the program failed: {exc}")
        _to_stderr("(set LLM_MESH_DEBUG=1 to see the traceback)")
        return EXIT_PROGRAM_FAILED
    except CommandError as exc:
        _error_line(f"error: {exc}")
        return exc.code
    except (InputError, OSError) as exc:
        # A user's mistake (a file that is missing, unreadable or malformed): one line, no traceback.
        _error_line(f"error: {exc}")
        return EXIT_UNUSABLE


def _error_line(line: str) -> None:
    _to_stderr(Text(line, style="red"))


def _to_stderr(text: Text | str) -> None:
    """An error's reader may have gone too (`llm-mesh preview 2>&1 | head -1`): the command still ends with its
    error's code, not with a second error about the pipe."""
    try:
        cli.err.print(text)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())


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
