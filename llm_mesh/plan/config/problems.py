"""How a validator blames a key: exceptions that carry the key and the value, read by the error reporting."""

from __future__ import annotations


class FieldProblem(ValueError):
    """A rule of a nested model that blames one of its own keys (named relative to the model)."""

    def __init__(self, field: str, value: object, message: str):
        self.field, self.value = field, value
        super().__init__(message)


class KeyProblem(ValueError):
    """A model-level rule that blames one key (pydantic would only name the model)."""

    def __init__(self, path: str, value: object, message: str):
        self.path, self.value = path, value
        super().__init__(message)


class Problems(ValueError):
    """Several cross-field mistakes, reported together."""

    def __init__(self, problems: list[KeyProblem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))
