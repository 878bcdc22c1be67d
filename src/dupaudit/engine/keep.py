"""The keep rule: which member of a duplicate group is kept (the others are the redundant copies)."""

from __future__ import annotations

from .model import ImageRecord


def keep_order(record: ImageRecord, width: int, height: int) -> tuple:
    """The member to keep sorts first: highest resolution, then largest file, then first (root, path)."""
    return (-(width * height), -record.size)
