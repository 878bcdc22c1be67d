"""dupaudit: find duplicated images in a training set, measure their skew, leakage and cost.

The public API: `scan` (-> ScanReport), `explain` (why two files are or are not grouped), the dedup actions
(`make_plan`, `apply_plan`, `undo`, `link_tree`, `write_list`) and, with the `probe` extra, `run_probe` and
`ProbeSettings` (loaded on first use, so that importing dupaudit never loads torch).
"""

__version__ = "0.1.0"

from .dedup import apply_plan, link_tree, make_plan, undo, write_list  # noqa: E402
from .engine.explanation import explain  # noqa: E402
from .engine.model import ClassStats, DuplicateGroup, GroupMember, ImageRecord, ScanReport, Skipped  # noqa: E402
from .engine.pipeline import scan  # noqa: E402
from .errors import DupauditError, InputError, MissingExtraError  # noqa: E402

__all__ = [
    "__version__",
    "scan",
    "explain",
    "ScanReport",
    "DuplicateGroup",
    "GroupMember",
    "ClassStats",
    "ImageRecord",
    "Skipped",
    "DupauditError",
    "InputError",
    "MissingExtraError",
    "make_plan",
    "apply_plan",
    "undo",
    "link_tree",
    "write_list",
    "run_probe",
    "ProbeSettings",
]


def __getattr__(name: str):
    if name in ("run_probe", "ProbeSettings"):
        from . import probing as probe

        return getattr(probe, name)
    raise AttributeError(f"module 'dupaudit' has no attribute {name!r}")
