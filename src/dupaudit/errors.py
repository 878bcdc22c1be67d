"""Errors the core raises; the CLI turns each into a one-line message and exit code 2."""

from __future__ import annotations

import re
from collections.abc import Callable


class DupauditError(Exception):
    """Base class of every error dupaudit reports to a user."""


class InputError(DupauditError):
    """A root, file or argument that cannot be used (missing folder, empty dataset)."""


class NamesParameters:
    """An error whose message names parameters as `{name}` or `{name=value}` (value a Python literal), so that
    the Python API says "model goes with method='cnn'" and the command line, through `spelled`, says "--model
    goes with --method cnn"."""

    _PLACEHOLDER = re.compile(r"\{(\w+)(?:=([^{}]*))?\}")
    template: str

    def spelled(self, spell: Callable[[str, str | None], str]) -> str:
        """The message with each parameter written by spell(name, value literal or None)."""
        return self._PLACEHOLDER.sub(lambda m: spell(m.group(1), m.group(2)), self.template)

    def _python(self) -> str:
        return self.spelled(lambda name, value: name if value is None else f"{name}={value}")


class ParameterError(NamesParameters, InputError):
    """A parameter value, or a combination of parameters, that a scan cannot use."""

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self._python())


class ConfigError(DupauditError):
    """A configuration value that is invalid."""


class BaselineError(DupauditError):
    """A baseline file that cannot be read or must be re-staged."""


class MissingExtraError(NamesParameters, DupauditError):
    """A feature needs an optional extra that is not installed; `feature` may name parameters ({method='cnn'})."""

    def __init__(self, extra: str, feature: str) -> None:
        self.extra = extra
        self.pip_line = f"pip install 'dupaudit[{extra}]'"
        # the pip line's brackets hold no word=value pair that the placeholder pattern would take
        self.template = f"{feature} needs the '{extra}' extra: {self.pip_line}"
        super().__init__(self._python())
