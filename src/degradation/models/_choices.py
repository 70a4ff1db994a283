"""Turn a user's choice (a str or a `str` Enum member) into one of a fixed set of names."""

from __future__ import annotations

from collections.abc import Sequence

from degradation.errors import UserError


def choice_name(value: object) -> str:
    """The plain string behind a choice: Enum members give their value, strings themselves."""
    return str(getattr(value, "value", value))


def check_choice(what: str, value: object, choices: Sequence[str]) -> str:
    """Return the normalised name, or raise a one-line UserError naming the valid choices."""
    name = choice_name(value)
    if name not in choices:
        raise UserError(f"{what}={name!r} is not valid; choose one of: {', '.join(choices)}")
    return name
