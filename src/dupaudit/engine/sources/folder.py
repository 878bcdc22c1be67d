"""A folder of image files: today's layouts, read by the tuned walk (listing.py) and discover.py, unchanged.

A folder is not read partition by partition: the scan keeps its fast path (one stat per file, the stored answer
keyed by the listing) and this class only says where the folder is, for the source layer's detection and for
scans that mix a folder with another kind of source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ...errors import InputError
from .base import SourceOptions
from .storage import is_url


@dataclass(frozen=True, slots=True)
class FolderSource:
    kind = "folder"
    target: str
    url: str
    name: str

    @classmethod
    def open(cls, target: str, options: SourceOptions) -> FolderSource:
        if is_url(target) and not target.startswith("file://"):
            raise InputError(
                f"{target}: a folder of image files must be local (for a remote one, list it in a manifest)"
            )
        path = target[len("file://") :] if target.startswith("file://") else target
        absolute = os.path.abspath(os.path.expanduser(path))
        return cls(path, absolute, os.path.basename(absolute) or "root")

    def records(self):
        """The folder's roots (split folders become one root each), its image records and what could not be listed."""
        from ..discover import image_records, resolve_roots
        from ..listing import list_files

        roots = resolve_roots(self.target)
        listing = list_files(roots)
        return roots, image_records(listing), listing.problems
