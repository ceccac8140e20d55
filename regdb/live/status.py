"""``regdb status``: per registry, what the inventory knows and since when."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from regdb.inventory import models


@dataclass(frozen=True)
class RegistryStatus:
    registry: str
    url: str
    last_complete_sync: datetime | None
    last_event: datetime | None
    observed_since: datetime | None
    observed_until: datetime | None
    window_end_reason: str | None
    repositories: int
    tags: int
    manifests: int
    pulled_manifests: int
    rejected_events: int
    tag_history_rows: int

    def as_dict(self) -> dict:
        return asdict(self)


def observed_window(conn: Connection, registry_id: int) -> tuple[datetime, datetime | None, str | None] | None:
    """(start, end or None while open, why it ended) of the registry's newest observed window."""
    table = models.ObservedWindow.__table__
    row = conn.execute(
        select(table.c.started_at, table.c.ended_at, table.c.end_reason)
        .where(table.c.registry_id == registry_id).order_by(table.c.id.desc()).limit(1)
    ).first()
    return tuple(row) if row else None


def registry_status(conn: Connection) -> list[RegistryStatus]:
    registries = models.Registry.__table__
    out = []
    for reg in conn.execute(select(registries).order_by(registries.c.name)).all():
        def count(table, *where, distinct=None):
            column = func.count(distinct) if distinct is not None else func.count()
            return conn.execute(select(column).select_from(table).where(*where)).scalar() or 0

        repos, tags, rd = models.Repo.__table__, models.Tag.__table__, models.RepoDigest.__table__
        windows, pulls = models.ObservedWindow.__table__, models.Pull.__table__
        repo_ids = select(repos.c.id).where(repos.c.registry_id == reg.id)
        window = observed_window(conn, reg.id)
        out.append(RegistryStatus(
            registry=reg.name,
            url=reg.url,
            last_complete_sync=reg.last_synced_at,
            last_event=conn.execute(
                select(func.max(windows.c.last_event_at)).where(windows.c.registry_id == reg.id)).scalar(),
            observed_since=window[0] if window else None,
            observed_until=window[1] if window else None,
            window_end_reason=window[2] if window else None,
            repositories=count(repos, repos.c.registry_id == reg.id),
            tags=count(tags, tags.c.repo_id.in_(repo_ids)),
            manifests=count(rd, rd.c.repo_id.in_(repo_ids)),
            pulled_manifests=conn.execute(
                select(func.count()).select_from(
                    select(pulls.c.repo, pulls.c.digest).where(pulls.c.registry_id == reg.id).distinct().subquery()
                )).scalar() or 0,
            rejected_events=count(models.RejectedEvent.__table__,
                                  models.RejectedEvent.__table__.c.registry_id == reg.id),
            tag_history_rows=count(models.TagHistory.__table__, models.TagHistory.__table__.c.registry_id == reg.id),
        ))
    return out
