"""dupaudit: find duplicated images in a training set, measure their skew, leakage and cost."""

__version__ = "0.1.0"

from .errors import DupauditError, InputError  # noqa: E402
from .model import ClassStats, DuplicateGroup, GroupMember, ImageRecord, ScanReport, Skipped  # noqa: E402
from .scan import scan  # noqa: E402

__all__ = ["__version__", "scan", "ScanReport", "DuplicateGroup", "GroupMember", "ClassStats", "ImageRecord",
           "Skipped", "DupauditError", "InputError"]
