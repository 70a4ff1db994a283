"""A user's choice among named options, checked: one line naming the valid choices if not."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from degradation.errors import UserError


def check_choice(what: str, choice: object, choices: Sequence[str]) -> str:
    """The choice as a plain string (an Enum member's value), or a one-line UserError naming
    the valid choices."""
    name = choice.value if isinstance(choice, Enum) else choice  # Python callers' Enums too
    if not isinstance(name, str) or name not in choices:
        raise UserError(f"{what}={name!r} is not valid; choose one of: {', '.join(choices)}")
    return name
