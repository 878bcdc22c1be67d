"""AuditConfig: the settings every command reads (scan, check, baseline, dedup, probe), from flags, environment
and files.

Precedence, highest first: command-line flag > DUPAUDIT_* environment variable > the config file > defaults.
The config file is the nearest `.dupaudit.toml` (top-level keys) or `pyproject.toml` with a `[tool.dupaudit]`
table, looking upward from the starting folder and stopping at the repository root (the folder holding .git).
Keys mirror the option names (`fail_on` or `fail-on`); unknown keys are logged as warnings, not errors, so an
older dupaudit can read a newer config. Relative paths in a file are relative to that file's folder; relative
paths from flags and the environment are relative to the current folder. Every scan setting is a key (their
defaults live in engine.model.Settings); `fail_on` and `baseline` are the gate's (check, baseline).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .engine.model import METHODS, Settings
from .engine.sources.base import SOURCE_TYPES, SourceOptions
from .engine.sources.storage import is_url, parse_storage_options
from .errors import ConfigError
from .policy import parse_rules

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, packaged as tomli (pyproject: tomli; python_version < '3.11')
    import tomli as tomllib

log = logging.getLogger(__name__)

CONFIG_FILE = ".dupaudit.toml"
DEFAULT_BASELINE = ".dupaudit-baseline.json"
# Every duplicate fails by default ('near' covers exact and pixel copies); the other two rules are listed so
# that a user who narrows the gate to "leakage,label-conflicts" reads the same names here.
DEFAULT_FAIL_ON = "near,label-conflicts,leakage"
ENV_PREFIX = "DUPAUDIT_"
# Keys read from another variable than DUPAUDIT_<KEY>: the CNN weights already had their own (engine/embed.py).
_ENV_NAMES = {"model": "DUPAUDIT_CNN_MODEL"}
_SCAN_DEFAULTS = Settings()


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """Everything the commands read; paths are absolute once resolved. The scan settings' defaults are
    Settings' (None: the default that Settings.resolve picks for the method and verify)."""

    root: str = "."  # the dataset folder; train/, val/, test/ children become splits
    against: tuple[str, ...] = ()  # extra evaluation folders outside root (checked for leakage)
    method: str = _SCAN_DEFAULTS.method
    threshold: int | None = None
    flips: bool = _SCAN_DEFAULTS.flips
    verify: bool = _SCAN_DEFAULTS.verify
    neighbours: int | None = None
    min_similarity: float | None = None
    fast_decode: bool = _SCAN_DEFAULTS.fast_decode
    rotations: bool = _SCAN_DEFAULTS.rotations
    model: str | None = None  # the weights of method "cnn" (used by that method only)
    fail_on: str = DEFAULT_FAIL_ON
    cache: str | None = None  # None: the user cache (~/.cache/dupaudit/fingerprints.sqlite or $DUPAUDIT_CACHE)
    baseline: str = DEFAULT_BASELINE
    jobs: int | None = None
    cluster: str | None = None  # scan on Dask: local:N or a scheduler address (docs/scale.md)
    workdir: str | None = None  # with cluster: where the workers write the fingerprint table
    # layout (engine/layout.py, README "Layouts"): split folders relative to root as "NAME=FOLDER", label level
    splits: tuple[str, ...] = ()
    label_depth: int | None = None
    label_from: str | None = None
    # how to read a root that is not a folder (engine/sources, docs/sources.md); None: detected
    source_type: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    split_column: str | None = None
    path_column: str | None = None
    storage_options: tuple[str, ...] = ()  # "KEY=VALUE" (fsspec options for URLs)
    source: str | None = None  # the config file read, if any (for messages)

    def scan_settings(self) -> Settings:
        """The configured scan settings, defaults filled (ParameterError when they do not go together)."""
        return Settings.resolve(**self.scan_parameters())

    def scan_parameters(self) -> dict[str, Any]:
        """The keyword arguments of engine.pipeline.scan (and dupaudit.scan) for the configured settings."""
        return {
            "method": self.method,
            "threshold": self.threshold,
            "flips": self.flips,
            "verify": self.verify,
            "neighbours": self.neighbours,
            "min_similarity": self.min_similarity,
            "fast_decode": self.fast_decode,
            "rotations": self.rotations,
            "model": self.model if self.method == "cnn" else None,
        }

    def source_options(self) -> SourceOptions:
        """How to read the roots that are not folders (engine.pipeline.scan's source_options)."""
        return SourceOptions(
            self.source_type,
            self.image_column,
            self.label_column,
            self.split_column,
            self.path_column,
            parse_storage_options(self.storage_options),
        )

    def layout_parameters(self) -> dict[str, Any]:
        """The layout keywords of engine.pipeline.scan and layout.detect_layout."""
        return {"splits": self.splits, "label_depth": self.label_depth, "label_from": self.label_from}


KEYS = tuple(f.name for f in fields(AuditConfig) if f.name != "source")
_PATH_KEYS = ("root", "cache", "baseline", "model")
_BOOL_KEYS = ("flips", "verify", "fast_decode", "rotations")
_INT_KEYS = ("threshold", "jobs", "neighbours", "label_depth")


def find_config_file(start: str | os.PathLike = ".") -> Path | None:
    """The nearest .dupaudit.toml, or pyproject.toml holding [tool.dupaudit], from `start` up to the repo root."""
    folder = Path(start).resolve()
    if folder.is_file():
        folder = folder.parent
    for candidate in (folder, *folder.parents):
        own = candidate / CONFIG_FILE
        if own.is_file():
            return own
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and "dupaudit" in _read_toml(pyproject).get("tool", {}):
            return pyproject
        if (candidate / ".git").exists():
            return None  # never read a config that belongs to an enclosing project
    return None


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_config_file(path: str | os.PathLike) -> dict[str, object]:
    """The dupaudit table of a config file, keys normalised to snake_case, paths made absolute."""
    path = Path(path).resolve()
    data = _read_toml(path)
    if path.name == "pyproject.toml" or "tool" in data and "dupaudit" in data.get("tool", {}):
        table = data.get("tool", {}).get("dupaudit", {})
        where = f"{path} [tool.dupaudit]"
    else:
        table = data
        where = str(path)
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table of settings")
    values = _normalise(table, where, unknown="warn")
    return _absolute(values, path.parent)


def _normalise(table: Mapping[str, object], where: str, unknown: str) -> dict[str, object]:
    values: dict[str, object] = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_").lower()
        if key == "roots":  # a list of folders: the first is the dataset, the rest are evaluation folders
            folders = _as_list(value, where, raw_key)
            if not folders:
                raise ConfigError(f"{where}: '{raw_key}' is empty")
            values["root"], values["against"] = folders[0], tuple(folders[1:])
            continue
        if key not in KEYS:
            if unknown == "warn":
                log.warning("%s: unknown key %r ignored (known keys: %s)", where, raw_key, ", ".join(KEYS))
            continue
        values[key] = _coerce(key, value, where, raw_key)
    return values


def _as_list(value: object, where: str, key: str) -> list[str]:
    if isinstance(value, str):
        return [part for part in (p.strip() for p in value.split(",")) if part]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):  # a tuple: repeated flags
        return list(value)
    raise ConfigError(f"{where}: '{key}' must be a folder or a list of folders, not {value!r}")


def _coerce(key: str, value: object, where: str, raw_key: str) -> object:
    """Check one value's type (strings from the environment are converted)."""
    if key == "against":
        return tuple(_as_list(value, where, raw_key))
    if key == "storage_options":  # a table {anon = true}, or "KEY=VALUE" strings (a list, or comma-separated)
        items = [f"{k}={_option_text(v)}" for k, v in value.items()] if isinstance(value, dict) else None
        items = items if items is not None else _as_list(value, where, raw_key)
        if not all(isinstance(item, str) and "=" in item for item in items):
            raise ConfigError(f"{where}: '{raw_key}' must be a table of KEY = VALUE, not {value!r}")
        return tuple(items)
    if key == "splits":  # a table {test = "holdout"}, or "NAME=FOLDER" strings (a list, or comma-separated)
        items = [f"{k}={v}" for k, v in value.items()] if isinstance(value, dict) else _as_list(value, where, raw_key)
        if not all(isinstance(item, str) and "=" in item for item in items):
            raise ConfigError(f"{where}: '{raw_key}' must be a table of NAME = FOLDER, not {value!r}")
        return tuple(items)
    if key == "min_similarity":
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: '{raw_key}' must be a number, not {value!r}") from None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not -1 <= value <= 1:
            raise ConfigError(f"{where}: '{raw_key}' must be a number between -1 and 1, not {value!r}")
        return float(value)
    if key in _INT_KEYS:
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise ConfigError(f"{where}: '{raw_key}' must be a whole number, not {value!r}") from None
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: '{raw_key}' must be a whole number, not {value!r}")
        if key == "threshold" and not 0 <= value <= 64:
            raise ConfigError(f"{where}: 'threshold' must be between 0 and 64, not {value}")
        if key == "jobs" and value < 1:
            raise ConfigError(f"{where}: 'jobs' must be at least 1, not {value}")
        if key == "neighbours" and value < 0:
            raise ConfigError(f"{where}: 'neighbours' must be 0 or more, not {value}")
        if key == "label_depth" and value < 1:
            raise ConfigError(f"{where}: 'label_depth' must be 1 or more, not {value}")
        return value
    if key in _BOOL_KEYS:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: '{raw_key}' must be true or false, not {value!r}")
        return value
    if key == "fail_on" and isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: '{raw_key}' must be a string, not {value!r}")
    if key == "source_type" and value not in SOURCE_TYPES:
        raise ConfigError(f"{where}: unknown source_type {value!r}: choose one of {', '.join(SOURCE_TYPES)}")
    if key == "method" and value not in METHODS:
        raise ConfigError(f"{where}: unknown method {value!r}: choose one of {', '.join(METHODS)}")
    if key == "fail_on":
        try:
            parse_rules(value)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return value


def _absolute(values: dict[str, object], base: Path) -> dict[str, object]:
    for key in _PATH_KEYS:
        if isinstance(values.get(key), str):
            values[key] = _resolved(values[key], base)
    if "against" in values:
        values["against"] = tuple(_resolved(p, base) for p in values["against"])
    return values


def _resolved(path: str, base: Path) -> str:
    """An absolute path; a URL (s3://bucket/shards, a dataset root that is not local) as it is."""
    return path if is_url(path) else str((base / os.path.expanduser(path)).resolve())


def _option_text(value: object) -> str:
    """A storage option's value from a TOML table, as --storage-option writes it (JSON for non-strings)."""
    return value if isinstance(value, str) else json.dumps(value)


def environment_values(environ: Mapping[str, str] | None = None, cwd: str | os.PathLike = ".") -> dict[str, object]:
    """Settings from DUPAUDIT_ROOT, DUPAUDIT_FAIL_ON, ... (lists are comma-separated)."""
    environ = os.environ if environ is None else environ
    names = {key: _ENV_NAMES.get(key, ENV_PREFIX + key.upper()) for key in KEYS}
    table = {key: environ[name] for key, name in names.items() if environ.get(name)}
    values = _normalise(table, "environment", unknown="ignore")
    return _absolute(values, Path(cwd).resolve())


def load_config(
    overrides: Mapping[str, object] | None = None,
    *,
    start: str | os.PathLike = ".",
    config_file: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
) -> AuditConfig:
    """Merge defaults < config file < environment < overrides (flags; None means 'not given')."""
    cwd = Path(start).resolve()
    path = Path(config_file) if config_file is not None else find_config_file(cwd)
    if config_file is not None and not path.is_file():
        raise ConfigError(f"{config_file}: no such config file")
    merged: dict[str, object] = {}
    default_base = cwd
    if path is not None:
        merged.update(read_config_file(path))
        default_base = path.resolve().parent  # the defaults (root ".", baseline) live beside the config file
    merged.update(environment_values(environ, cwd))
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(flags) - set(KEYS)
    if unknown:
        raise ConfigError(f"unknown setting{'s' if len(unknown) > 1 else ''}: {', '.join(sorted(unknown))}")
    merged.update(_absolute(_normalise(flags, "command line", unknown="ignore"), cwd))
    config = AuditConfig(**merged, source=str(path.resolve()) if path is not None else None)
    defaults = {
        k: str((default_base / AuditConfig.__dataclass_fields__[k].default).resolve())
        for k in ("root", "baseline")
        if k not in merged
    }
    return replace(config, **defaults) if defaults else config
