"""`python -m llm_mesh.cli`: the `llm-mesh` command."""

import sys

from llm_mesh.cli import main

sys.exit(main())
