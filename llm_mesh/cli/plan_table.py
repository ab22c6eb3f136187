"""The plan as `pulumi preview` draws it: a tree of resources, each with its type and what happens to it."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from llm_mesh import cli
from llm_mesh.cli.output import WIDE_PLAN_COLUMNS, one_line
from llm_mesh.engine.summary import gpu_capacity
from llm_mesh.words import count


def print_plan(document: dict[str, Any]) -> None:
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column(" ", width=2, min_width=2, no_wrap=True)
    rows = tree(document["steps"])
    if cli.out.width >= WIDE_PLAN_COLUMNS:
        table.add_column("Type")
        table.add_column("Name")
        table.add_column("Plan")
        table.add_column("Info", style="yellow")
        for prefix, step in rows:
            state = step["newState"]
            info = "protected" if state.get("protect") else ""
            table.add_row(
                Text(" +", style="green"), prefix + state["type"], step["urn"].rsplit("::", 1)[-1], "create", info
            )
    else:
        # A narrow terminal (80 columns): the tree by name, each with its kind; every step is a create.
        # Fixed widths for the rest, so that only a long name is shortened (rich would squeeze every column).
        kind_width, info_width, gaps = 18, 9, 6
        name_width = max(20, cli.out.width - 2 - kind_width - info_width - gaps)
        table.add_column("Name (all: create)", no_wrap=True, overflow="ellipsis", max_width=name_width)
        table.add_column("Kind", no_wrap=True, overflow="ellipsis", max_width=kind_width)
        table.add_column("Info", style="yellow", no_wrap=True, width=9)
        for prefix, step in rows:
            state = step["newState"]
            kind = state["type"].rsplit(":", 1)[-1]
            info = "protected" if state.get("protect") else ""
            table.add_row(Text(" +", style="green"), prefix + step["urn"].rsplit("::", 1)[-1], kind, info)
    cli.out.print(table)
    for diagnostic in document["diagnostics"]:
        cli.out.print(f"{diagnostic['severity']}: {diagnostic['message']}")
    creates = document["changeSummary"].get("create", 0)
    cli.out.print(f"\nResources: [green]+ {creates} to create[/green]")
    unknown = document["offline"]["knownAfterDeploy"]
    if unknown:
        shown = ", ".join(unknown[:6]) + (", ..." if len(unknown) > 6 else "")
        cli.out.print(f"Known only after deployment: {count(len(unknown), 'value')} ({shown})", soft_wrap=one_line())
    for capacity in gpu_capacity(document):
        cli.out.print(f"GPU capacity: {capacity}")


def tree(steps: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Each step with the box-drawing prefix of its place under its parent (steps come parents first)."""
    children: dict[str, list[dict[str, Any]]] = {}
    for step in steps:
        children.setdefault(step["newState"].get("parent", ""), []).append(step)
    rows: list[tuple[str, dict[str, Any]]] = []

    def visit(parent: str, indent: str, depth: int) -> None:
        siblings = children.get(parent, [])
        for i, step in enumerate(siblings):
            last = i == len(siblings) - 1
            branch = "" if depth == 0 else ("└─ " if last else "├─ ")
            rows.append((indent + branch, step))
            deeper = indent + ("" if depth == 0 else ("   " if last else "│  "))
            visit(step["urn"], deeper, depth + 1)

    visit("", "", 0)
    return rows
