"""Untag: remove a tag while keeping its digest and the other tags on it.

A registry deletes per (repository, digest): ``DELETE /v2/<repo>/manifests/<digest>`` takes every tag of that
repository on the digest with it (docs/registry-behaviour.md). To remove just one tag there are two ways:

* ``delete-tag``: ``DELETE /v2/<repo>/manifests/<tag>``, which OCI distribution 1.1 defines. distribution 2.8
  answers it 400 DIGEST_INVALID (pinned in tests/test_registry_facts.py).
* ``placeholder``: push a tiny manifest of our own, unique to this one tag, under the tag (which moves the tag
  off the real digest), then delete that placeholder by its digest: the tag goes with it, and nothing else
  points at it. It needs push and delete rights (``repository:<name>:pull,push,delete``). The placeholder is
  an OCI manifest whose config and only layer are the empty descriptor (``application/vnd.oci.empty.v1+json``,
  the 2-byte blob ``{}``), with annotations that say who made it and for which tag; its 2-byte blob stays
  until a garbage collection, as unreferenced blobs do.

``auto`` tries ``delete-tag`` on the first tag and falls back to the placeholder when the registry refuses it.
Before any tag is moved, the rights are checked without changing anything (the placeholder's blob is
uploaded, a digest that cannot exist is deleted: 404 means allowed): a registry that refuses to delete (405) or
a token without push or delete rights stops the run there, instead of leaving a tag on a placeholder.
Should the placeholder's DELETE fail afterwards, the tag is put back on its digest and the placeholder deleted
again. After each untag, the digest must still be in the repository with its other tags: a registry whose
DELETE by tag took the manifest with it gets the manifest pushed back under those tags.

Each outcome is written to ``deletions`` (outcome ``untagged``) together with the inventory change: the tag row
goes, the digest stays in the repository.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field

from sqlalchemy import Engine, and_, delete, insert, select, update

from regdb.inventory import models
from regdb.registry.reference import follow_url, is_repository, is_tag, printable
from regdb.cleanup import journal
from regdb.inventory.registries import require_registry
from regdb.registry.client import RegistryClient
from regdb.registry.media import OCI_MANIFEST
from regdb.registry.transport import digest_of
from regdb.inventory.db import insert_id, write_transaction
from regdb.errors import (
    AuthenticationFailed,
    DeleteDisabled,
    RegdbError,
    RegistryError,
    ScopeRefused,
    SelectorError,
)
from regdb.inventory.models import utcnow
from regdb.inventory.sync import sync_registry

log = logging.getLogger(__name__)

METHODS = ("auto", "delete-tag", "placeholder")
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
EMPTY_DIGEST = digest_of(EMPTY_BLOB)
PLACEHOLDER_ANNOTATION = "org.regdb.placeholder"

_registries = models.Registry.__table__
_repos = models.Repo.__table__
_digests = models.Digest.__table__
_tags = models.Tag.__table__
_deletions = models.Deletion.__table__


# --- the plan -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Untag:
    """One tag to remove; its digest and ``other_tags`` (the repository's other tags on it) stay."""

    repo: str
    tag: str
    digest: str
    media_type: str
    other_tags: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"repo": self.repo, "tag": self.tag, "digest": self.digest, "media_type": self.media_type,
                "other_tags": list(self.other_tags)}


@dataclass
class UntagPlan:
    registry: str  # URL
    registry_name: str  # host[:port]
    registry_id: int
    repo: str
    rows: list[Untag]
    method: str  # 'delete-tag' or 'placeholder': what will be tried first
    why: str  # one line: why that method
    requested: str = "auto"  # what the user asked for ('auto' falls back from delete-tag to placeholder)

    def as_dict(self) -> dict:
        return {"registry": self.registry_name, "repo": self.repo, "method": self.method, "why": self.why,
                "rows": [row.as_dict() for row in self.rows]}


def plan_untag(engine: Engine, client: RegistryClient, repo: str, tags, *, method: str = "auto",
               refresh: bool = True, jobs: int = 16) -> UntagPlan:
    """The tags of ``repo`` to remove, each with its digest and the tags that stay on it, on fresh facts (the
    repository is synced first unless ``refresh=False``). Raises SelectorError for a tag or repository the
    registry does not have, or a tag named twice in one plan is simply planned once."""
    if method not in METHODS:
        raise SelectorError(f"unknown untag method '{method}': use one of {', '.join(METHODS)}")
    names = list(dict.fromkeys([tags] if isinstance(tags, str) else list(tags)))
    if not names:
        raise SelectorError("no tags given: name at least one {tags:TAG} to untag", fields=("tags",))
    if not is_repository(repo):
        raise SelectorError(f"not a valid repository name: {printable(repo)}")
    for name in names:
        if not is_tag(name):
            raise SelectorError(f"not a valid tag: {printable(name)}")
    if refresh:
        sync_registry(engine, client, repos=[repo], jobs=jobs)
    with engine.connect() as conn:
        registry_id, registry_name = require_registry(conn, client.ref), client.name
        repo_id = conn.execute(
            select(_repos.c.id).where(_repos.c.registry_id == registry_id, _repos.c.name == repo)
        ).scalar()
        if repo_id is None:
            raise SelectorError(f"repository {repo} not found in {registry_name}")
        other = _tags.alias("other")
        rows: dict[str, Untag] = {}
        for tag, digest, media_type in conn.execute(
            select(_tags.c.name, _digests.c.digest, _digests.c.media_type)
            .join(_digests, _digests.c.id == _tags.c.digest_id)
            .where(_tags.c.repo_id == repo_id, _tags.c.name.in_(names))
        ):
            others = conn.execute(
                select(other.c.name)
                .join(_tags, and_(_tags.c.repo_id == other.c.repo_id, _tags.c.digest_id == other.c.digest_id))
                .where(_tags.c.repo_id == repo_id, _tags.c.name == tag, other.c.name.not_in(names))
                .order_by(other.c.version_key.asc().nulls_last(), other.c.name)
            ).scalars()
            rows[tag] = Untag(repo, tag, digest, media_type, tuple(others))
    missing = [name for name in names if name not in rows]
    if missing:
        raise SelectorError(
            f"tag{'s' if len(missing) > 1 else ''} {', '.join(missing)} not found in repository {repo} "
            f"of {registry_name}"
        )
    chosen, why = _predict(client, repo, rows[names[0]].digest, method)
    return UntagPlan(client.url, registry_name, registry_id, repo, [rows[name] for name in names], chosen, why,
                     requested=method)


def _predict(client: RegistryClient, repo: str, digest: str, method: str) -> tuple[str, str]:
    """Which method will be used, without changing anything in the registry.

    Only trying DELETE by tag would tell for sure, and that deletes; a registry that serves the OCI 1.1
    referrers API implements the 1.1 spec, DELETE by tag included, and distribution 2.x has neither."""
    if method == "placeholder":
        return "placeholder", "asked for: the tag is moved to a placeholder manifest, which is then deleted"
    if method == "delete-tag":
        return "delete-tag", "asked for: DELETE by tag, no fallback"
    if client.referrers(repo, digest) is not None:
        return "delete-tag", "the registry speaks OCI distribution 1.1 (referrers API): DELETE by tag"
    return "placeholder", (
        "the registry has no OCI 1.1 referrers API, so DELETE by tag will likely be refused (distribution 2.x "
        "answers 400); it is tried first, then the tag is moved to a placeholder manifest, which is deleted"
    )


# --- carrying it out ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UntagOutcome:
    row: Untag
    outcome: str  # 'untagged', 'skipped' or 'failed'
    method: str | None = None
    http_status: int | None = None
    error: str | None = None
    # The placeholder manifest pushed and deleted (digest, bytes): its blob stays until a garbage collection.
    placeholder: tuple[str, int] | None = None

    def as_dict(self) -> dict:
        return {**self.row.as_dict(), "outcome": self.outcome, "method": self.method,
                "http_status": self.http_status, "error": self.error}


@dataclass
class UntagResult:
    run_id: str
    registry: str
    untagged: list[UntagOutcome] = field(default_factory=list)
    skipped: list[UntagOutcome] = field(default_factory=list)
    failed: list[UntagOutcome] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "registry": self.registry,
                "untagged": [o.as_dict() for o in self.untagged], "skipped": [o.as_dict() for o in self.skipped],
                "failed": [o.as_dict() for o in self.failed]}


def untag(engine: Engine, client: RegistryClient, plan: UntagPlan, *, run_id: str | None = None) -> UntagResult:
    """Remove the planned tags, one after the other; see the module docstring.

    Raises ``DeleteDisabled`` / ``ScopeRefused`` when the registry refuses to delete or push at all (before any
    tag was touched), ``RemovalIncomplete`` (``.result``) when an untag failed."""
    from regdb.errors import RemovalIncomplete
    from regdb.cleanup.execute import new_run_id

    if client.url != plan.registry:
        raise RegdbError(f"this plan is for {plan.registry}, not {client.url}: plan again for that registry")
    result = UntagResult(run_id=run_id or new_run_id(), registry=plan.registry)
    if plan.rows:
        journal.check_writable(engine)  # "cannot write inventory" before any tag is touched
        result_resolved = journal.resolve_in_flight(engine, client, run_id=result.run_id)
        log.debug("settled %d in-flight rows of earlier runs", len(result_resolved))
    worker = _Untagger(engine, client, plan, result)
    for row in plan.rows:
        # The journal: an in-flight row before the tag is touched, turned into the outcome after.
        row_id = worker.intend(row)
        worker.record(worker.untag_one(row), row_id)
    if result.failed:
        lines = [f"untag incomplete: {len(result.untagged)} of {len(plan.rows)} tags removed"]
        lines += [f"  not removed: {o.row.repo}:{o.row.tag} ({o.error})" for o in result.failed]
        raise RemovalIncomplete("\n".join(lines), result=result)
    return result


class _Untagger:
    def __init__(self, engine: Engine, client: RegistryClient, plan: UntagPlan, result: UntagResult):
        self.engine = engine
        self.client = client
        self.plan = plan
        self.result = result
        # None: not tried yet. 'auto' tries DELETE by tag once; a refusal switches the run to the placeholder.
        self.delete_tag_works: bool | None = {"placeholder": False, "delete-tag": True}.get(plan.requested)
        self.placeholder_checked = False

    # -- one tag

    def untag_one(self, row: Untag) -> UntagOutcome:
        client, repo = self.client, row.repo
        now = client.resolve(repo, row.tag)
        if now is None:
            return UntagOutcome(row, "skipped", error="the tag is gone from the registry since the plan")
        if now.digest != row.digest:
            return UntagOutcome(row, "skipped", error=f"the tag moved to {now.digest} since the plan")
        # The manifest's own bytes: pushed back if a registry's DELETE by tag took the manifest with it.
        body, media_type = client.manifest(repo, row.digest)
        media_type = media_type or row.media_type

        status = None
        method = None
        if self.delete_tag_works is not False:
            status = self._delete_by_tag(row)
            if status in (200, 202):
                method = "delete-tag"
                self.delete_tag_works = True
            elif self.plan.requested == "delete-tag":
                return UntagOutcome(row, "failed", "delete-tag", status,
                                    f"the registry refused DELETE by tag ({status}); try --method placeholder")
            else:
                log.info("registry %s refused DELETE by tag (%s): using a placeholder manifest", client.url, status)
                self.delete_tag_works = False
        placeholder = None
        if method is None:
            method = "placeholder"
            self._check_placeholder_rights(repo)
            failure = self._untag_with_placeholder(row, body, media_type)
            if isinstance(failure, UntagOutcome):
                return failure
            placeholder, status = failure, 202
        after = client.resolve(repo, row.tag)
        if after is not None and after.digest == row.digest:
            return UntagOutcome(row, "failed", method, status,
                                f"the registry answered {status} but {row.tag} still names {row.digest}")
        problem = self._check_digest_kept(row, body, media_type)
        if problem is not None:
            return UntagOutcome(row, "failed", method, status, problem)
        return UntagOutcome(row, "untagged", method, status, placeholder=placeholder)

    def _delete_by_tag(self, row: Untag) -> int:
        try:
            status = self.client.delete_tag(row.repo, row.tag)
        except ScopeRefused:
            raise
        except AuthenticationFailed as error:
            raise _refused(self.client, row.repo, error) from None
        # Any refusal (400 on distribution 2.x, 405, a 403 from a tag-immutability rule) means: not this way.
        # The placeholder's rights check then tells a refused scope or disabled deletion apart.
        return status

    def _untag_with_placeholder(self, row: Untag, body: bytes, media_type: str) -> UntagOutcome | tuple[str, int]:
        """The placeholder (digest, bytes) once the tag went with it, or the outcome of a failure."""
        client, repo = self.client, row.repo
        placeholder = placeholder_manifest(repo, row.tag)
        try:
            client.put_manifest(repo, row.tag, placeholder, OCI_MANIFEST)
        except RegistryError as error:
            # Nothing moved: the registry refused the push (the tag still names the real digest).
            return UntagOutcome(row, "failed", "placeholder", error.status, f"pushing the placeholder: {error}")
        placeholder_digest = digest_of(placeholder)
        try:
            status = client.delete_manifest(repo, placeholder_digest)
            if status in (200, 202, 404):
                return placeholder_digest, len(placeholder)
            return UntagOutcome(row, "failed", "placeholder", status, f"DELETE answered {status}")
        except RegistryError as error:
            return self._put_back(row, body, media_type, placeholder_digest, error)

    def _put_back(self, row: Untag, body: bytes, media_type: str, placeholder_digest: str,
                  error: RegistryError) -> UntagOutcome:
        """The placeholder could not be deleted: put the tag back on its digest, then try the placeholder's
        DELETE once more (it holds no tag by then)."""
        client, repo = self.client, row.repo
        try:
            client.put_manifest(repo, row.tag, body, media_type)
        except RegistryError as again:
            return UntagOutcome(
                row, "failed", "placeholder", error.status,
                f"deleting placeholder {placeholder_digest} failed ({error}) and putting {row.tag} back on "
                f"{row.digest} failed too ({again}): the tag now names the placeholder",
            )
        try:
            client.delete_manifest(repo, placeholder_digest)
            left = ""
        except RegistryError as again:
            left = f"; placeholder {placeholder_digest} is left untagged ({again})"
        return UntagOutcome(row, "failed", "placeholder", error.status,
                            f"deleting the placeholder failed ({error}); {row.tag} is back on {row.digest}{left}")

    def _check_placeholder_rights(self, repo: str) -> None:
        """Once per run, before any tag is moved: may we push and delete here? The empty blob's upload needs
        push rights; a DELETE of a digest that cannot exist answers 404 where deleting is allowed, and 405
        (deletion disabled) or 401/403 (no delete scope) otherwise, without changing anything. A refusal stops
        the run here, before a tag could be left on a placeholder that cannot be deleted."""
        if self.placeholder_checked:
            return
        client = self.client
        try:
            _ensure_empty_blob(client, repo)
        except AuthenticationFailed as error:
            raise _refused(client, repo, error, "push") from None
        except RegistryError as error:
            if error.status in (401, 403):
                raise _refused(client, repo, error, "push") from None
            raise RegistryError(
                f"cannot upload the placeholder's blob to {repo} ({error}); untag on this registry needs push "
                f"and delete rights (repository:{repo}:pull,push,delete)", status=error.status
            ) from None
        nowhere = digest_of(f"regdb delete check {uuid.uuid4().hex}".encode())
        try:
            client.delete_manifest(repo, nowhere)
        except (DeleteDisabled, ScopeRefused):
            raise
        except AuthenticationFailed as error:
            raise _refused(client, repo, error) from None
        self.placeholder_checked = True

    def _check_digest_kept(self, row: Untag, body: bytes, media_type: str) -> str | None:
        """The digest must still be in the repository, its other tags on it. A registry whose DELETE by tag
        deleted the manifest itself gets it pushed back under those tags (its blobs are still there until a
        garbage collection)."""
        client, repo = self.client, row.repo
        if client.manifest_exists(repo, row.digest):
            return None
        try:
            for reference in row.other_tags or (row.digest,):
                client.put_manifest(repo, reference, body, media_type)
        except RegistryError as error:
            return (f"the registry deleted {row.digest} itself, with its tags {', '.join(row.other_tags)}, and "
                    f"pushing it back failed ({error})")
        if row.other_tags:
            log.warning("registry %s deleted %s with the tag %s; pushed it back under %s", client.url, row.digest,
                        row.tag, ", ".join(row.other_tags))
        return None

    # -- the record

    def intend(self, row: Untag) -> int:
        with journal.interrupts_held(), write_transaction(self.engine) as conn:
            now = utcnow()
            return insert_id(conn, insert(_deletions).values(
                run_id=self.result.run_id, at=now, intent_at=now, registry=self.plan.registry, repo=row.repo,
                digest=row.digest, tags=row.tag, media_type=row.media_type, bytes=0, reason="untag",
                outcome=journal.IN_FLIGHT,
            ))

    def record(self, outcome: UntagOutcome, row_id: int) -> None:
        row = outcome.row
        with journal.interrupts_held(), write_transaction(self.engine) as conn:
            conn.execute(update(_deletions).where(_deletions.c.id == row_id).values(
                at=utcnow(), reason=f"untag via {outcome.method}" if outcome.method else "untag",
                outcome=outcome.outcome, http_status=outcome.http_status, error=outcome.error,
                placeholder_digest=outcome.placeholder[0] if outcome.placeholder else None,
                placeholder_size=outcome.placeholder[1] if outcome.placeholder else None,
            ))
            if outcome.outcome == "untagged":
                # The tag is gone from the registry; the digest stays in repo_digests with its other tags.
                repo_id = select(_repos.c.id).where(
                    _repos.c.registry_id == self.plan.registry_id, _repos.c.name == row.repo
                ).scalar_subquery()
                conn.execute(delete(_tags).where(_tags.c.repo_id == repo_id, _tags.c.name == row.tag))
                from regdb.inventory.history import record_tag_history

                record_tag_history(conn, self.plan.registry_id, row.repo, [(row.tag, row.digest, None)],
                                   source="removal")
        getattr(self.result, outcome.outcome).append(outcome)


def placeholder_manifest(repo: str, tag: str) -> bytes:
    """A unique OCI manifest with nothing in it: the empty descriptor as config and as its one layer (OCI 1.1's
    shape for content-less artifacts; a layer, because some registries refuse a manifest without one)."""
    empty = {"mediaType": EMPTY_MEDIA_TYPE, "digest": EMPTY_DIGEST, "size": len(EMPTY_BLOB)}
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": empty,
        "layers": [empty],
        "annotations": {
            # Unique, so that deleting it by digest can never take another tag along.
            PLACEHOLDER_ANNOTATION: f"regdb untag {repo}:{tag}",
            f"{PLACEHOLDER_ANNOTATION}.nonce": uuid.uuid4().hex,
            "org.opencontainers.image.created": utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _ensure_empty_blob(client: RegistryClient, repo: str) -> None:
    """The 2-byte ``{}`` blob in ``repo``: a registry refuses a manifest whose blobs it does not hold."""
    base = f"/v2/{repo}/blobs/"
    if client.request("HEAD", base + EMPTY_DIGEST, kind="blob").status_code == 200:
        return
    started = client.request("POST", base + "uploads/", kind="blob-upload")
    if started.status_code != 202 or "Location" not in started.headers:
        raise _answered(started, f"POST {base}uploads/")
    # distribution 2.8 opens a session on POST (a body there is not a monolithic upload); PUT finishes it.
    # The PUT carries our credentials: an upload Location on another host is refused, never followed (a hostile
    # registry answering http://elsewhere/ would get the user's password).
    location = follow_url(client.url + "/", started.headers["Location"],
                          what=f"POST {base}uploads/: the registry's upload Location", same_origin=True)
    done = client.request("PUT", location, kind="blob-upload", params={"digest": EMPTY_DIGEST}, data=EMPTY_BLOB,
                          headers={"Content-Type": "application/octet-stream"})
    if done.status_code != 201:
        raise _answered(done, f"PUT {base}uploads/")


def _answered(response, what: str) -> RegistryError:
    return RegistryError(f"{what}: registry answered {response.status_code}", status=response.status_code)


def _refused(client: RegistryClient, repo: str, error: RegistryError, action: str = "delete") -> ScopeRefused:
    scope = f"repository:{repo}:{action}"
    return ScopeRefused(
        f"registry {client.url} refused scope {scope} ({error.status or 401}): untag needs "
        f"repository:{repo}:pull,push,delete",
        scope=scope, status=error.status,
    )
