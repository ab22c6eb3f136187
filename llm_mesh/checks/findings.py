"""A finding of `llm-mesh validate`: a code, the object, what is wrong and the one-line fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Literal["error", "warning"]
    object: str
    message: str
    fix: str

    def line(self) -> str:
        return f"{self.severity} {self.code} {self.object}: {self.message} (fix: {self.fix})"
