"""Validation errors as one line per problem, naming the field by its YAML path."""

from __future__ import annotations

from pydantic import ValidationError


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line per problem: ``file: spec.endpoint.port: Input should be ...``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        lines.append(f"{source}: {loc or '<root>'}: {err['msg']}")
    return "\n".join(lines)
