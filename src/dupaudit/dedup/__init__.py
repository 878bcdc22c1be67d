"""Acting on a scan without losing data: a dedup plan, apply (move to a quarantine, journalled), undo, link tree.

The rule: dupaudit never deletes a user's file. The only removal is moving a file into a quarantine folder,
and when that move cannot be an atomic rename (another filesystem) it is copy, fsync, verify, then remove.

Safety comes from a write-ahead journal (JSON lines, one fsync per line): before a file is touched, a `move`
record naming its source, its destination and its SHA-256 is on disk. After a crash or SIGKILL at any point,
the state of every journalled file is derived from the filesystem itself (source present? destination present?
same bytes?), never from what the journal claims happened, so `apply` resumes and `undo` restores from any
point, and running either twice does nothing the second time.

A plan is plain JSON a person can edit: move an entry from `drop` to `keep`, or delete a whole group.
"""

from .apply import ApplyResult, UndoResult, apply_plan, undo
from .files import PARTIAL_SUFFIX, file_sha256
from .journal import FAULT_ENV, JOURNAL_NAME, read_journal
from .kept import KeptFile, kept_files, link_tree, list_bytes, summarize, write_list
from .plan import (
    Plan,
    PlanFile,
    PlanGroup,
    PlanRoot,
    StalePlanError,
    drops_by_split,
    evaluation_splits,
    make_plan,
    plan_from_dict,
    plan_to_dict,
    read_plan,
    render_plan,
    write_plan,
)

__all__ = [
    "Plan",
    "PlanFile",
    "PlanGroup",
    "PlanRoot",
    "ApplyResult",
    "UndoResult",
    "StalePlanError",
    "KeptFile",
    "make_plan",
    "write_plan",
    "read_plan",
    "render_plan",
    "plan_to_dict",
    "plan_from_dict",
    "apply_plan",
    "undo",
    "kept_files",
    "JOURNAL_NAME",
    "PARTIAL_SUFFIX",
    "FAULT_ENV",
    "write_list",
    "list_bytes",
    "link_tree",
    "read_journal",
    "file_sha256",
    "summarize",
    "drops_by_split",
    "evaluation_splits",
]
