"""Every private name of the Pulumi SDK the project uses: imported here, and nowhere else.

The offline engine runs the program the way the language host does and reads what the SDK keeps to itself (the
output types of generated classes, its registry of resource modules, the tasks it waits for). A new SDK may
rename or drop any of these without notice: tests/engine/test_sdk_private.py imports each one and names the one that
moved, with the version pinned in requirements/program.in. Other modules import these names from here.
"""

from __future__ import annotations

import inspect

from pulumi import _types as sdk_types
from pulumi.runtime import ResourceModule, rpc
from pulumi.runtime.settings import _get_rpc_manager as get_rpc_manager
from pulumi.runtime.sync_await import _sync_await as sync_await

# The wire signatures of a special value (a secret), as the SDK serializes them.
SPECIAL_SIG_KEY: str = rpc._special_sig_key
SPECIAL_SECRET_SIG: str = rpc._special_secret_sig


def resource_modules(package_module: str) -> list[ResourceModule]:
    """The generated modules that registered resource classes for `package:module` (how the SDK finds a class)."""
    return rpc._RESOURCE_MODULES.get(package_module, [])


def init_parameters(cls: type) -> list[str]:
    """A generated resource class's keyword arguments, in order, from the `_internal_init` its `__init__` calls."""
    return list(inspect.signature(cls._internal_init).parameters)  # type: ignore[attr-defined]


__all__ = [
    "SPECIAL_SECRET_SIG",
    "SPECIAL_SIG_KEY",
    "get_rpc_manager",
    "init_parameters",
    "resource_modules",
    "sdk_types",
    "sync_await",
]
