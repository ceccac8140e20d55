"""Retention by use: was a (repository, digest) pulled since a cutoff, and has the inventory seen long enough?

A pull counts toward everything that reaches the pulled manifest in that repository: pulling an index child
by digest (what a client does after reading the index) is a use of the index, and so of the tags on it; pulling
a referrer (a signature, an SBOM, whose OCI ``subject`` is the image) is a use of its subject. Only manifest
pulls are in ``pulls`` (regdb's own requests never are: ``regdb.live.apply``).

"Not pulled" is only true as far back as the inventory observed: a selection by it refuses when the current
observed window (``observed_windows``) began after the cutoff.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Connection, and_, exists, or_, select

from regdb.inventory import models
from regdb.errors import SelectorError

_pulls = models.Pull.__table__
_repos = models.Repo.__table__
_digests = models.Digest.__table__
_children = models.DigestChild.__table__
_windows = models.ObservedWindow.__table__


class ObservedTooShort(SelectorError):
    """The inventory has not observed pulls for the whole period asked for."""


def used_since(repo_id, digest_id, since: datetime) -> ColumnElement[bool]:
    """SQL: the manifest ``digest_id`` of repository ``repo_id`` (columns of the outer query) was used since
    ``since``: it, one of its index children, or a referrer of it was pulled from that repository."""
    p = _pulls.alias("use_pull")
    r = _repos.alias("use_repo")
    pulled = _digests.alias("use_pulled")
    target = _digests.alias("use_target")
    child = _children.alias("use_child")
    reaches = or_(
        pulled.c.id == digest_id,
        # correlate_except: the outer query's columns reach two levels down, which auto-correlation does not do.
        exists().where(child.c.parent_id == digest_id, child.c.child_id == pulled.c.id).correlate_except(child),
        pulled.c.subject_digest == select(target.c.digest).where(target.c.id == digest_id)
        .correlate_except(target).scalar_subquery(),
    )
    return exists(
        select(p.c.digest)
        .select_from(p.join(r, and_(r.c.registry_id == p.c.registry_id, r.c.name == p.c.repo))
                     .join(pulled, pulled.c.digest == p.c.digest))
        .where(r.c.id == repo_id, p.c.last_pulled_at >= since, reaches)
    )


def observed_since(conn: Connection, registry_id: int) -> datetime | None:
    """Since when the inventory has seen every event of the registry (the newest window's start), or None."""
    return conn.execute(
        select(_windows.c.started_at).where(_windows.c.registry_id == registry_id)
        .order_by(_windows.c.id.desc()).limit(1)
    ).scalar()


def check_observed(conn: Connection, registry_id: int, since: datetime, option: str) -> None:
    """Raise ``ObservedTooShort`` (one line, naming ``option``) unless the window reaches back to ``since``."""
    start = observed_since(conn, registry_id)
    if start is None:
        raise ObservedTooShort(
            f"{option}: the inventory has observed no pulls of this registry (run 'regdb listen' with the "
            "registry's notifications pointed at it)")
    if start > since:
        raise ObservedTooShort(
            f"{option}: the inventory has observed pulls only since {start:%Y-%m-%d %H:%M} UTC, "
            f"not since {since:%Y-%m-%d %H:%M}; give a shorter period or wait")
