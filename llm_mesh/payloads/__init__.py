"""Code that runs inside the pods, not in the plan: the weights fetch (an init container) and the drain (a
preStop hook), each run by the server image's Python as `python3 -c SOURCE`.

A pod's spec carries the code, so any change to the text would roll every GPU Deployment (new pods, a weights
fetch, minutes of reload each). The code is shipped as its behaviour only: parsed, its docstrings dropped, and
written back by `ast.unparse` (which keeps no comment), so that editing a comment or a docstring changes nothing
the cluster sees, and a change of code does.
"""

from __future__ import annotations

import ast
from pathlib import Path

HERE = Path(__file__).parent


def shipped(source: str) -> str:
    """The source as the pod runs it: the same behaviour, without comments or docstrings."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree) + "\n"


FETCH_MODEL = shipped((HERE / "fetch_model.py").read_text())
DRAIN_SERVER = shipped((HERE / "drain_server.py").read_text())
