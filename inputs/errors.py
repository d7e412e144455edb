"""The two kinds of bad input, each a one-paragraph message for the user (search.py exits with code 2)."""
from __future__ import annotations


class ConfigError(Exception):
    """A mistake in the config file or on the command line, explained for the user."""


class DataError(Exception):
    """A data file is unusable; the message is one paragraph meant for the end user.

    `path`, `line` and `column` repeat what the message says (1-based; None
    where not relevant) so callers can act on them without parsing text.
    """

    def __init__(self, message: str, path: str | None = None,
                 line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column
