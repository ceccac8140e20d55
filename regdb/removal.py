"""Removal, as one import: the plan (``regdb.cleanup.plan``) and carrying it out (``regdb.cleanup.execute``).

Kept so that ``from regdb.removal import TagQuery, RepoQuery`` (docs/removal.md) goes on working.
"""

from .cleanup.execute import Outcome, RemovalResult, incomplete_message, new_run_id, remove, verify
from .cleanup.plan import (
    CHILD,
    SELECTED,
    SIGNATURE,
    SIGNATURE_TAG_SUFFIXES,
    UNTAGGED,
    Plan,
    PlannedDeletion,
    RepoQuery,
    TagQuery,
    freed_bytes,
    plan_fresh,
    plan_removal,
    refresh_selection,
)

__all__ = [
    "CHILD", "SELECTED", "SIGNATURE", "SIGNATURE_TAG_SUFFIXES", "UNTAGGED", "Outcome", "Plan", "PlannedDeletion",
    "RemovalResult", "RepoQuery", "TagQuery", "freed_bytes", "incomplete_message", "new_run_id", "plan_fresh",
    "plan_removal", "refresh_selection", "remove", "verify",
]
