"""The one exception type for user mistakes.

Anything raised as `UserError` is reported by the CLI as a single line on stderr with
exit code 2 and no traceback; every other exception is a bug or an environment failure.
"""

import argparse


class UserError(ValueError):
    """A mistake the user can fix: bad value, missing file, impossible combination.

    The message is one line that names the bad value and the valid choices.
    """


def first_line(err: BaseException) -> str:
    """An exception's first line, or its type name when it has no message: for one-line errors."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


class CommandLineParser(argparse.ArgumentParser):
    """argparse, except that a mistake on the command line is a UserError (one line, exit 2,
    from the CLI's own handler) instead of argparse's usage text."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}")
