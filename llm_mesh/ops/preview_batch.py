"""Preview several stacks of one project in one process: `python preview_batch.py PROJECT OUT STACK...`.

Run as a script with the project's folder first on sys.path, so that a checkout of another git ref previews
with its own program, components and llm_mesh package, not this one's. The SDK's imports, which dominate a
preview, are paid once for all the stacks. Each stack's document goes to OUT/STACK.json, or its error to
OUT/STACK.error (one line per problem).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path


def main(project_dir: str, out_dir: str, stacks: list[str]) -> None:
    sys.path.insert(0, project_dir)
    import pulumi

    from llm_mesh.engine.document import preview_document
    from llm_mesh.engine.run import run_program
    from llm_mesh.engine.stackfile import Project, read_stack_settings
    from llm_mesh.plan.config import ConfigError

    try:
        from llm_mesh.errors import InputError
    except ImportError:  # a base ref from before the one error class: its errors keep their type's name
        InputError = ()  # type: ignore[assignment,misc]  # an except clause with () catches nothing

    project = Project.find(Path(project_dir))
    out = Path(out_dir)
    for stack in stacks:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            recording = run_program(project, stack, read_stack_settings(project, stack))
            (out / f"{stack}.json").write_text(json.dumps(preview_document(recording)))
        except ConfigError as exc:
            (out / f"{stack}.error").write_text("\n".join(exc.problems) + "\n")
        except FileNotFoundError:
            (out / f"{stack}.error").write_text(f"{stack}: no such stack file at this ref\n")
        except InputError as exc:  # a stack file that does not read (bad YAML): its own one-line message
            (out / f"{stack}.error").write_text(f"{exc}\n")
        except Exception as exc:  # a broken ref is reported per stack, never as this tool's traceback
            (out / f"{stack}.error").write_text(f"{type(exc).__name__}: {exc}\n")
        finally:
            loop.close()
            asyncio.set_event_loop(None)
            # Each stack starts from nothing: no root resource or config of the previous one.
            pulumi.runtime.settings.set_root_resource(None)  # type: ignore[arg-type]
            pulumi.runtime.set_all_config({}, [])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
