"""The inventory's tables, as SQLAlchemy 2.0 typed models.

The tables mirror what a Docker Registry v2 / OCI registry holds: registries contain repositories; a
repository holds manifests (``repo_digests``), some of them named by tags; a manifest is either an image (a
config blob and layer blobs: ``digest_blobs``) or an index / manifest list (child manifests with a platform:
``digest_children``). A manifest digest is content-addressed, so one ``digests`` row serves every repository
and registry that holds it, and is fetched from a registry once, ever.

Each column's ``doc`` is what it means for someone querying the file with SQL or a BI tool; ``regdb schema``
prints them. The public contract for BI users is the set of views (see ``regdb.inventory.views``), not these tables.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timezone
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    LargeBinary,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

if TYPE_CHECKING:
    from sqlalchemy import Table

# Named constraints, so Alembic's batch mode can rebuild SQLite tables and drop constraints by name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Version keys and digests compare byte-wise; PostgreSQL's default collation would not (it ignores
# punctuation in en_US), so they carry the "C" collation there. SQLite compares BINARY by default.
ByteString = String().with_variant(String(collation="C"), "postgresql")


def utcnow() -> datetime:
    """Now as every DateTime column of the inventory stores it: UTC, without a time zone."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    if TYPE_CHECKING:
        # Every model here is declared with columns, so its __table__ is a Table (DeclarativeBase types it as
        # any FromClause, which insert() / update() / delete() do not take); the inventory's code uses it.
        __table__: ClassVar[Table]


class Registry(Base):
    """A registry regdb has synced; one inventory can hold several."""

    __tablename__ = "registries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(
        String, unique=True, doc="Base URL of the registry, scheme included (https://registry.example.com)."
    )
    name: Mapped[str] = mapped_column(String, doc="Host (and port) of the registry, as in image names.")
    last_synced_at: Mapped[datetime | None] = mapped_column(
        DateTime, doc="When the last successful sync of this registry finished (UTC)."
    )


class Repo(Base):
    """A repository of a registry, as listed by its catalog (or named on the command line)."""

    __tablename__ = "repos"
    __table_args__ = (UniqueConstraint("registry_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    registry_id: Mapped[int] = mapped_column(
        ForeignKey("registries.id", ondelete="CASCADE"), doc="The registry holding the repository."
    )
    name: Mapped[str] = mapped_column(String, doc="Repository name (library/alpine, team/app).")
    incomplete: Mapped[str | None] = mapped_column(
        Text, doc="Why the last listing of this repository was incomplete (a name skipped as invalid, a listing "
                  "cut off); NULL when it was complete. A removal touching it refuses."
    )


class Digest(Base):
    """A manifest, by digest: content-addressed, so one row serves every repository and registry holding it."""

    __tablename__ = "digests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(
        ByteString, unique=True, doc="Manifest digest (sha256:...), the hash of the manifest's bytes."
    )
    media_type: Mapped[str] = mapped_column(
        String, doc="Manifest media type: Docker schema 2, Docker manifest list, OCI manifest or OCI index."
    )
    kind: Mapped[str] = mapped_column(
        String, doc="'image' for a single-platform manifest, 'index' for a manifest list / OCI index."
    )
    size: Mapped[int] = mapped_column(BigInteger, doc="Length of the manifest itself, in bytes.")
    total_size: Mapped[int] = mapped_column(
        BigInteger,
        doc="Image: manifest + config + layers (compressed bytes). Index: the sum over its children.",
    )
    config_digest: Mapped[str | None] = mapped_column(ByteString, doc="Digest of the image's config blob.")
    created: Mapped[datetime | None] = mapped_column(
        DateTime, doc="Image build time from the config (UTC); for an index, its newest child's."
    )
    architecture: Mapped[str | None] = mapped_column(String, doc="CPU architecture from the image config.")
    os: Mapped[str | None] = mapped_column(String, doc="Operating system from the image config.")
    artifact_type: Mapped[str | None] = mapped_column(
        String, doc="OCI artifactType, or the config media type when it is not an image config."
    )
    subject_digest: Mapped[str | None] = mapped_column(
        ByteString, doc="OCI 1.1 subject: the manifest this one refers to (signatures, SBOMs)."
    )
    fetched_at: Mapped[datetime] = mapped_column(DateTime, doc="When regdb first fetched this manifest (UTC).")


class RepoDigest(Base):
    """Every manifest present in a repository, tagged or not, index children included."""

    __tablename__ = "repo_digests"

    repo_id: Mapped[int] = mapped_column(
        ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True, doc="The repository."
    )
    digest_id: Mapped[int] = mapped_column(
        ForeignKey("digests.id"), primary_key=True, index=True, doc="A manifest present in it."
    )


class Tag(Base):
    """A tag of a repository and the manifest it points at."""

    __tablename__ = "tags"
    __table_args__ = (
        UniqueConstraint("repo_id", "name"),
        Index("ix_tags_repo_id_version_key", "repo_id", "version_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), doc="The repository.")
    name: Mapped[str] = mapped_column(String, doc="Tag name (latest, 1.4.2).")
    digest_id: Mapped[int] = mapped_column(
        ForeignKey("digests.id"), doc="The manifest the tag points at (an index for multi-arch)."
    )
    version_key: Mapped[str | None] = mapped_column(
        ByteString,
        doc="Sortable key of the tag's version (PEP 440, leading v allowed); NULL when the tag is no version.",
    )


class DigestChild(Base):
    """Index / manifest list -> child manifest, with the platform the index names for it."""

    __tablename__ = "digest_children"

    parent_id: Mapped[int] = mapped_column(
        ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True, doc="The index."
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True, doc="Order of the child in the index.")
    child_id: Mapped[int] = mapped_column(ForeignKey("digests.id"), index=True, doc="The child manifest.")
    architecture: Mapped[str | None] = mapped_column(String, doc="platform.architecture in the index.")
    os: Mapped[str | None] = mapped_column(String, doc="platform.os in the index.")
    variant: Mapped[str | None] = mapped_column(String, doc="platform.variant in the index (v8, v7).")
    missing: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(),
        doc="The registry no longer has this child (deleted, garbage-collected): the child's digests row is a "
            "placeholder of kind 'missing'. See the broken_indexes view.",
    )


class DigestBlob(Base):
    """Image manifest -> the blobs it references (config first, then layers), with their sizes."""

    __tablename__ = "digest_blobs"

    digest_id: Mapped[int] = mapped_column(
        ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True, doc="The image manifest."
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True, doc="0 for the config, then each layer.")
    blob_digest: Mapped[str] = mapped_column(ByteString, index=True, doc="Digest of the blob.")
    kind: Mapped[str] = mapped_column(String, doc="'config' or 'layer'.")
    size: Mapped[int] = mapped_column(BigInteger, doc="Blob size in bytes (compressed, as stored).")


class Sync(Base):
    """One sync run, successful or failed."""

    __tablename__ = "syncs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(DateTime, doc="Start of the run (UTC).")
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, doc="End of the run (UTC).")
    status: Mapped[str] = mapped_column(String, doc="'ok' or 'failed'.")
    error: Mapped[str | None] = mapped_column(Text, doc="Why a failed run failed (one line).")
    scope: Mapped[str | None] = mapped_column(Text, doc="Repositories named on the command line, if any.")
    repos: Mapped[int] = mapped_column(Integer, default=0, doc="Repositories seen.")
    tags: Mapped[int] = mapped_column(Integer, default=0, doc="Tags seen.")
    digests_fetched: Mapped[int] = mapped_column(Integer, default=0, doc="Manifests fetched for the first time.")
    requests: Mapped[int] = mapped_column(Integer, default=0, doc="HTTP requests made.")


class Deletion(Base):
    """One row per attempted manifest deletion: the audit trail of every removal."""

    __tablename__ = "deletions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(String, index=True, doc="Identifies the removal run.")
    at: Mapped[datetime] = mapped_column(DateTime, doc="When the outcome was recorded (UTC).")
    # `registry` is reserved on declarative classes; the column keeps the plain name for SQL users.
    registry_url: Mapped[str] = mapped_column("registry", String, doc="Registry URL.")
    repo: Mapped[str] = mapped_column(String, doc="Repository name.")
    digest: Mapped[str] = mapped_column(ByteString, doc="Manifest digest.")
    tags: Mapped[str | None] = mapped_column(Text, doc="Tags that pointed at it, comma separated.")
    media_type: Mapped[str | None] = mapped_column(String, doc="Manifest media type.")
    bytes: Mapped[int | None] = mapped_column(BigInteger, doc="Bytes a garbage collection frees for this plan row.")
    reason: Mapped[str | None] = mapped_column(String, doc="Why it was planned (selected, child of, signature of).")
    outcome: Mapped[str] = mapped_column(
        String, index=True, doc="'deleted', 'skipped', 'failed', 'untagged', or 'in-flight': the DELETE was about "
                    "to be sent when the run stopped (the next removal asks the registry and records what it finds)."
    )
    http_status: Mapped[int | None] = mapped_column(Integer, doc="HTTP status of the DELETE.")
    error: Mapped[str | None] = mapped_column(Text, doc="Why it was skipped or failed.")
    # The journal (issue #12): the intent is written before the DELETE is sent, the outcome after.
    intent_at: Mapped[datetime | None] = mapped_column(
        DateTime, doc="When the intent to delete was recorded, before the DELETE was sent (UTC)."
    )
    # nullable spelled out: in this class `bytes` names the column above, not the type.
    manifest: Mapped[builtins.bytes | None] = mapped_column(
        LargeBinary, nullable=True,
        doc="The manifest's bytes as the registry served them, so 'regdb restore' can push it back."
    )
    resolved_by: Mapped[str | None] = mapped_column(
        String, doc="Run that settled an in-flight row by asking the registry whether the manifest was gone."
    )
    restored_by: Mapped[str | None] = mapped_column(
        String, doc="Run of 'regdb restore' that pushed the manifest (and its tags) back."
    )
    # An untag by placeholder (regdb/cleanup/untag.py) leaves that manifest's blob in storage until a garbage
    # collection.
    placeholder_digest: Mapped[str | None] = mapped_column(
        ByteString, doc="Untag: the placeholder manifest pushed under the tag and deleted (reclaimable lists it)."
    )
    placeholder_size: Mapped[int | None] = mapped_column(BigInteger, doc="Untag: the placeholder's bytes.")


# --- the live inventory (issue 15): registry notifications, tag history, pulls ---------------------------------


class TagHistory(Base):
    """Where a tag pointed, and from when to when: one row per (tag, digest) stretch."""

    __tablename__ = "tag_history"
    __table_args__ = (Index("ix_tag_history_registry_id_repo_tag", "registry_id", "repo", "tag"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id", ondelete="CASCADE"))
    repo: Mapped[str] = mapped_column(String, doc="Repository name.")
    tag: Mapped[str] = mapped_column(String, doc="Tag name.")
    digest: Mapped[str] = mapped_column(ByteString, doc="The manifest the tag pointed at.")
    valid_from: Mapped[datetime] = mapped_column(
        DateTime, index=True, doc="When regdb saw the tag start pointing there (UTC): the event's time, or the "
                                  "sync's when a sync found it."
    )
    valid_to: Mapped[datetime | None] = mapped_column(
        DateTime, index=True, doc="When it stopped pointing there (UTC); NULL while it still does."
    )
    source: Mapped[str] = mapped_column(String, doc="Who saw it start: 'event', 'sync' or 'removal'.")
    ended_by: Mapped[str | None] = mapped_column(String, doc="Who saw it end: 'event', 'sync' or 'removal'.")


class Pull(Base):
    """Manifest pulls per (repository, digest) and day (UTC), from the registry's notifications."""

    __tablename__ = "pulls"

    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id", ondelete="CASCADE"), primary_key=True)
    repo: Mapped[str] = mapped_column(String, primary_key=True, doc="Repository name.")
    digest: Mapped[str] = mapped_column(ByteString, primary_key=True, doc="The manifest pulled.")
    day: Mapped[str] = mapped_column(String, primary_key=True, doc="UTC day, YYYY-MM-DD.")
    gets: Mapped[int] = mapped_column(Integer, default=0, doc="GET requests for the manifest that day.")
    heads: Mapped[int] = mapped_column(Integer, default=0, doc="HEAD requests for the manifest that day.")
    last_pulled_at: Mapped[datetime] = mapped_column(DateTime, doc="The last of them (UTC).")


class ObservedWindow(Base):
    """A stretch of time over which the inventory received every notification of a registry instance."""

    __tablename__ = "observed_windows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id", ondelete="CASCADE"), index=True)
    instance_id: Mapped[str] = mapped_column(String, doc="source.instanceID of the registry process sending.")
    started_at: Mapped[datetime] = mapped_column(DateTime, doc="The first event of the window (UTC).")
    last_event_at: Mapped[datetime] = mapped_column(DateTime, doc="The newest event applied in it (UTC).")
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, doc="When the window ended (UTC); NULL while open.")
    end_reason: Mapped[str | None] = mapped_column(Text, doc="Why it ended (the registry restarted, ...).")


class AppliedEvent(Base):
    """Notification ids already applied: delivery is at least once, applying is exactly once."""

    __tablename__ = "applied_events"

    event_id: Mapped[str] = mapped_column(ByteString, primary_key=True, doc="The event's id.")
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id", ondelete="CASCADE"))
    applied_at: Mapped[datetime] = mapped_column(DateTime, index=True, doc="When it was applied (UTC).")
    action: Mapped[str] = mapped_column(String, doc="push, pull, delete, mount, or 'rejected'.")


class RejectedEvent(Base):
    """A notification regdb received (and answered 200, so the registry's queue moves on) but could not apply."""

    __tablename__ = "rejected_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id", ondelete="CASCADE"))
    event_id: Mapped[str | None] = mapped_column(String, doc="The event's id, when it had one.")
    received_at: Mapped[datetime] = mapped_column(DateTime, doc="When the listener received it (UTC).")
    reason: Mapped[str] = mapped_column(Text, doc="Why it could not be applied (one line).")
    event: Mapped[str] = mapped_column(Text, doc="The event as received (JSON), cut at 8 KiB.")


# --- summaries behind the BI views (regdb/inventory/summaries.py keeps them equal to the rows above) ------------------


class SummaryRepo(Base):
    """Per repository, the figures of the repo_stats view, kept by every writer in its own transaction."""

    __tablename__ = "summary_repos"

    repo_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, doc="The repository.")
    registry_id: Mapped[int] = mapped_column(Integer, doc="The registry holding it.")
    tags: Mapped[int] = mapped_column(BigInteger, doc="Tags in the repository.")
    digests: Mapped[int] = mapped_column(BigInteger, doc="Manifests in it, tagged or not.")
    total_bytes: Mapped[int] = mapped_column(BigInteger, doc="Bytes of the distinct blobs its manifests use.")
    unique_bytes: Mapped[int] = mapped_column(BigInteger, doc="The part of total_bytes no other repository uses.")


class SummaryDirty(Base):
    """Repositories whose tags or manifests changed since their summaries were last refreshed: triggers on tags
    and repo_digests add them, whoever writes; regdb/inventory/summaries.py refreshes them and takes them out."""

    __tablename__ = "summary_dirty"

    repo_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, doc="The repository.")


class SummaryRepoBlob(Base):
    """Every blob a repository's manifests keep in storage (the manifests too), once per repository."""

    __tablename__ = "summary_repo_blobs"
    __table_args__ = (Index("ix_summary_repo_blobs_registry_blob", "registry_id", "blob_digest"),)

    repo_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, doc="The repository.")
    blob_digest: Mapped[str] = mapped_column(ByteString, primary_key=True, doc="A manifest, config or layer digest.")
    registry_id: Mapped[int] = mapped_column(Integer, doc="The registry holding the repository.")
    size: Mapped[int] = mapped_column(BigInteger, doc="Its size in bytes.")


class SummaryBlob(Base):
    """Per registry and blob (manifests included), how many of its repositories hold it."""

    __tablename__ = "summary_blobs"

    registry_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, doc="The registry.")
    blob_digest: Mapped[str] = mapped_column(ByteString, primary_key=True, doc="A manifest, config or layer digest.")
    repos: Mapped[int] = mapped_column(BigInteger, doc="Repositories of the registry holding it.")


class SummaryDigest(Base):
    """Per registry and manifest, the figures of the digest_usage view."""

    __tablename__ = "summary_digests"

    registry_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, doc="The registry.")
    digest_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, doc="The manifest.")
    repos: Mapped[int] = mapped_column(BigInteger, doc="Repositories of the registry holding it.")
    tags: Mapped[int] = mapped_column(BigInteger, doc="Tags of the registry pointing at it.")


class SummaryBlobUsage(Base):
    """Per registry and config or layer blob, the figures of the blob_usage view."""

    __tablename__ = "summary_blob_usage"

    registry_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, doc="The registry.")
    blob_digest: Mapped[str] = mapped_column(ByteString, primary_key=True, doc="Digest of the blob.")
    size: Mapped[int] = mapped_column(BigInteger, doc="Blob size in bytes.")
    manifests: Mapped[int] = mapped_column(BigInteger, doc="Manifests of the registry referencing it.")
    repos: Mapped[int] = mapped_column(BigInteger, doc="Repositories of the registry holding such a manifest.")


# Indexes the views need at a million tags: images by build time (the age queries of docs/data-source.md), and
# the signatures view's two halves (cosign tags, OCI 1.1 referrers) without scanning every tag and manifest.
Index("ix_digests_created", Digest.created)
Index("ix_digests_subject_digest", Digest.subject_digest, sqlite_where=text("subject_digest IS NOT NULL"),
      postgresql_where=text("subject_digest IS NOT NULL"))
# Every tag of a repository with its manifest, from the index alone: counting images (Datasette counts every view
# it shows) reads no tag row, 0.13 s instead of 0.31 s on the bench's million tags (migration 0009).
Index("ix_tags_repo_id_digest_id", Tag.repo_id, Tag.digest_id)
# The tags of a manifest, and the repositories they are in, from the index alone (replaces 0001's index on
# digest_id alone, migration 0010). A query that starts from manifests (an image property: os, size, media type)
# then reads no tag row; Datasette's facet suggestions on `images` are such queries, and each one it cannot finish
# in 50 ms costs its page those 50 ms.
Index("ix_tags_digest_id_repo_id", Tag.digest_id, Tag.repo_id)
# Repositories and manifests in name and size order: Datasette's facet suggestion on `images.repo` and on
# `images.size` / `digest_usage.size` stops after its first 31 groups instead of grouping every row (0010).
Index("ix_repos_name", Repo.name)
Index("ix_digests_total_size", Digest.total_size)
# Artifacts among the images (few): found without scanning every tag, for a query and for Datasette's facet
# suggestions on images.artifact_type (migration 0009).
Index("ix_digests_artifact_type", Digest.artifact_type, sqlite_where=text("artifact_type IS NOT NULL"),
      postgresql_where=text("artifact_type IS NOT NULL"))
Index(
    "ix_tags_signature", Tag.repo_id, Tag.digest_id,
    sqlite_where=text("SUBSTR(name, 1, 7) = 'sha256-' AND LENGTH(name) >= 71"),
    postgresql_where=text("SUBSTR(name, 1, 7) = 'sha256-' AND LENGTH(name) >= 71"),
)
