"""A user's choice — a `str` Enum member from a config, or a plain string — as a plain value."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any

from degradation.errors import UserError


def value(x: Any) -> Any:
    """An Enum member's plain value (configs hold Enums, files and models want strings);
    anything else as it is."""
    return x.value if isinstance(x, Enum) else x


def check_choice(what: str, choice: object, choices: Sequence[str]) -> str:
    """The choice as a plain string, or a one-line UserError naming the valid choices."""
    name = value(choice)
    if not isinstance(name, str) or name not in choices:
        raise UserError(f"{what}={name!r} is not valid; choose one of: {', '.join(choices)}")
    return name
