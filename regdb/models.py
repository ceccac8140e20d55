"""The inventory's tables, as SQLAlchemy 2.0 typed models.

The tables mirror what a Docker Registry v2 / OCI registry holds: registries contain repositories; a
repository holds manifests (``repo_digests``), some of them named by tags; a manifest is either an image (a
config blob and layer blobs: ``digest_blobs``) or an index / manifest list (child manifests with a platform:
``digest_children``). A manifest digest is content-addressed, so one ``digests`` row serves every repository
and registry that holds it, and is fetched from a registry once, ever.

Each column's ``doc`` is what it means for someone querying the file with SQL or a BI tool; ``regdb schema``
prints them. The public contract for BI users is the set of views (see ``regdb.views``), not these tables.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


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
        ForeignKey("digests.id"), index=True, doc="The manifest the tag points at (an index for multi-arch)."
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
    outcome: Mapped[str] = mapped_column(String, doc="'deleted', 'skipped' or 'failed'.")
    http_status: Mapped[int | None] = mapped_column(Integer, doc="HTTP status of the DELETE.")
    error: Mapped[str | None] = mapped_column(Text, doc="Why it was skipped or failed.")
