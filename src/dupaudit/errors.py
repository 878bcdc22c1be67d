"""Errors the core raises; the CLI turns each into a one-line message and exit code 2."""

from __future__ import annotations


class DupauditError(Exception):
    """Base class of every error dupaudit reports to a user."""


class InputError(DupauditError):
    """A root, file or argument that cannot be used (missing folder, empty dataset)."""


class ConfigError(DupauditError):
    """A configuration value that is invalid."""


class BaselineError(DupauditError):
    """A baseline file that cannot be read or must be re-staged."""


class MissingExtraError(DupauditError):
    """A feature needs an optional extra that is not installed."""

    def __init__(self, extra: str, feature: str) -> None:
        self.extra = extra
        self.pip_line = f"pip install 'dupaudit[{extra}]'"
        super().__init__(f"{feature} needs the '{extra}' extra: {self.pip_line}")
