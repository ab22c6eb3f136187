"""Print one served version's openAPIV3Schema from a CRD file, as vendored in llm_mesh/checks/crd_schemas/.

Descriptions and `status` are dropped (what we check is what we write: the spec); everything else, the
Kubernetes extensions (x-kubernetes-validations, list types, defaults) included, is kept as published.

    git -C MIRROR show TAG:PATH > crd.yaml
    .venv/bin/python tools/vendor_crd_schema.py crd.yaml v1 > llm_mesh/checks/crd_schemas/NAME.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml


def strip(node: Any) -> Any:
    if isinstance(node, dict):
        # A property may itself be called `description`; only the prose (a string) goes.
        return {k: strip(v) for k, v in node.items() if not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main(path: str, version: str) -> None:
    with open(path) as f:
        crd = yaml.safe_load(f)
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = strip(served["schema"]["openAPIV3Schema"])
    schema["properties"].pop("status", None)
    print(json.dumps(schema, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(*sys.argv[1:])
