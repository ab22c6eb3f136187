"""The `llm-mesh` command: thin commands over the library, registered by name (`registry.py`), each module
imported only when its command runs, and one place (`exits.py`) that turns what a command raised into the lines
it prints and its exit code."""

from __future__ import annotations

import sys

from rich.console import Console

# Piped output (CI logs, PR comments) keeps each resource on one line instead of wrapping at 80 columns.
# Commands print through `cli.out` and `cli.err`, looked up at each call: a test replaces them here, once.


class _Console(Console):
    """A closed pipe (`llm-mesh preview | head`) is reported as the broken pipe it is, and the command ends with the
    documented 141; rich's own handler would exit 1, the code of findings."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


out = _Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = _Console(stderr=True, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    # Imported here, after the consoles they print through: `import llm_mesh.cli` stays the consoles alone.
    from llm_mesh.cli import exits, registry

    words = sys.argv[1:] if argv is None else argv
    name = registry.command_named(words)

    def run() -> int:
        args = registry.parser(name if name in registry.COMMANDS else None).parse_args(words)
        return registry.load(args.command).run(args)

    return exits.exit_code_of(name, run)
