"""dupaudit: find duplicated images in a training set, measure their skew, leakage and cost.

The public, typed API (README "Use from Python"): `scan` (-> ScanReport, which `to_json` saves and
`ScanReport.from_json` reads back), `Settings` (what decides a scan's answer, with its defaults), `explain`
(why two files are or are not grouped), the dedup actions (`make_plan`, `apply_plan`, `undo`, `link_tree`,
`write_list`) and, with the `probe` extra, `probe` (-> ProbeReport) and `ProbeSettings`. The probe's types are
loaded on first use, and torch only when a probe trains, so importing dupaudit never loads torch.
"""

from typing import TYPE_CHECKING

from ._version import __version__
from .api import probe, scan
from .engine.model import (
    ClassStats,
    DuplicateGroup,
    GroupMember,
    ImageRecord,
    Root,
    ScanReport,
    Settings,
    Skipped,
    SplitStats,
    Summary,
)
from .errors import ConfigError, DupauditError, InputError, MissingExtraError, ParameterError

if TYPE_CHECKING:
    from .dedup import apply_plan, link_tree, make_plan, undo, write_list
    from .engine.explanation import Explanation, explain

__all__ = [
    "__version__",
    "scan",
    "Settings",
    "explain",
    "Explanation",
    "ScanReport",
    "Summary",
    "SplitStats",
    "ClassStats",
    "DuplicateGroup",
    "GroupMember",
    "Root",
    "ImageRecord",
    "Skipped",
    "DupauditError",
    "InputError",
    "ParameterError",
    "ConfigError",
    "MissingExtraError",
    "make_plan",
    "apply_plan",
    "undo",
    "link_tree",
    "write_list",
    "probe",
    "ProbeSettings",
    "ProbeReport",
    "run_probe",
]

_PROBING_NAMES = ("ProbeSettings", "ProbeReport", "run_probe")
# Loaded on first use too: the commands that need neither (check, scan) start without them.
_LAZY_NAMES = {
    **dict.fromkeys(("make_plan", "apply_plan", "undo", "link_tree", "write_list"), ".dedup"),
    **dict.fromkeys(("Explanation", "explain"), ".engine.explanation"),
}


def __getattr__(name: str):
    # Loaded on first use (PEP 562): the probing package imports no torch, but only the probe needs it.
    if name in _PROBING_NAMES:
        from . import probing

        return getattr(probing, name)
    if name in _LAZY_NAMES:
        import importlib

        return getattr(importlib.import_module(_LAZY_NAMES[name], __name__), name)
    raise AttributeError(f"module 'dupaudit' has no attribute {name!r}")
