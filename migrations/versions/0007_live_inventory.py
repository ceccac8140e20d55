"""live inventory: tag history, pulls, observed windows, applied and rejected events, the pull_stats view

Revision ID: 0007
Revises: 0006
Registry notifications (issue #15): `regdb listen` applies pushes, pulls and deletes as they happen.
`tag_history` keeps where each tag pointed from when to when (written by the listener, the sync and regdb's
removals); `pulls` counts manifest pulls per (repository, digest) and day; `observed_windows` records over which
time the inventory has seen every event (retention by use refuses beyond it); `applied_events` makes applying an
event idempotent (delivery is at least once); `rejected_events` keeps what could not be applied. The
`pull_stats` view is a frozen copy of regdb/inventory/views.py as it was when this revision was written.

Create Date: 2026-12-01 19:30:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ByteString = sa.String().with_variant(sa.String(collation="C"), "postgresql")

PULL_STATS_VIEW = """
CREATE VIEW pull_stats AS
SELECT registries.name AS registry,
       pulls.repo AS repo,
       pulls.digest AS digest,
       MAX(pulls.last_pulled_at) AS last_pulled_at,
       SUM(pulls.gets) AS gets,
       SUM(pulls.heads) AS heads,
       COUNT(*) AS days,
       MIN(pulls.day) AS first_day
FROM pulls
JOIN registries ON registries.id = pulls.registry_id
GROUP BY registries.name, pulls.repo, pulls.digest
"""


def _registry_fk(table: str, **kwargs) -> sa.Column:
    return sa.Column("registry_id", sa.Integer(), sa.ForeignKey(
        "registries.id", ondelete="CASCADE", name=op.f(f"fk_{table}_registry_id_registries")), nullable=False,
        **kwargs)


def upgrade() -> None:
    op.create_table(
        "tag_history",
        sa.Column("id", sa.Integer(), primary_key=True),
        _registry_fk("tag_history"),
        sa.Column("repo", sa.String(), nullable=False),
        sa.Column("tag", sa.String(), nullable=False),
        sa.Column("digest", ByteString, nullable=False),
        sa.Column("valid_from", sa.DateTime(), nullable=False),
        sa.Column("valid_to", sa.DateTime(), nullable=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("ended_by", sa.String(), nullable=True),
    )
    op.create_index("ix_tag_history_registry_id_repo_tag", "tag_history", ["registry_id", "repo", "tag"])
    op.create_index("ix_tag_history_valid_from", "tag_history", ["valid_from"])
    op.create_index("ix_tag_history_valid_to", "tag_history", ["valid_to"])
    op.create_table(
        "pulls",
        _registry_fk("pulls", primary_key=True),
        sa.Column("repo", sa.String(), primary_key=True),
        sa.Column("digest", ByteString, primary_key=True),
        sa.Column("day", sa.String(), primary_key=True),
        sa.Column("gets", sa.Integer(), nullable=False),
        sa.Column("heads", sa.Integer(), nullable=False),
        sa.Column("last_pulled_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "observed_windows",
        sa.Column("id", sa.Integer(), primary_key=True),
        _registry_fk("observed_windows"),
        sa.Column("instance_id", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("last_event_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_observed_windows_registry_id", "observed_windows", ["registry_id"])
    op.create_table(
        "applied_events",
        sa.Column("event_id", ByteString, primary_key=True),
        _registry_fk("applied_events"),
        sa.Column("applied_at", sa.DateTime(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
    )
    op.create_index("ix_applied_events_applied_at", "applied_events", ["applied_at"])
    op.create_table(
        "rejected_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        _registry_fk("rejected_events"),
        sa.Column("event_id", sa.String(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
    )
    op.execute(PULL_STATS_VIEW)
    # Today's tags open their history, so the first move after the upgrade has a stretch to end.
    op.execute("""
INSERT INTO tag_history (registry_id, repo, tag, digest, valid_from, source)
SELECT repos.registry_id, repos.name, tags.name, digests.digest,
       COALESCE(registries.last_synced_at, CURRENT_TIMESTAMP), 'sync'
FROM tags
JOIN repos ON repos.id = tags.repo_id
JOIN registries ON registries.id = repos.registry_id
JOIN digests ON digests.id = tags.digest_id
""")


def downgrade() -> None:
    op.execute("DROP VIEW pull_stats")
    for table in ("rejected_events", "applied_events", "observed_windows", "pulls", "tag_history"):
        op.drop_table(table)
