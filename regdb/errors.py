"""Named errors raised by the regdb library.

The library never prints and never exits: it raises one of these, and the CLI boundary turns each into a
one-line message with exit status 1 (``RegdbError``) or 2 (``SelectorError``, a usage mistake).
"""

from __future__ import annotations


class RegdbError(Exception):
    """Base class: everything regdb raises on purpose. ``str(error)`` is the one line a user sees."""


# --- talking to the registry -------------------------------------------------------------------------------


class RegistryError(RegdbError):
    """The registry answered, but not with what the Docker Registry v2 / OCI distribution API promises."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class RegistryUnreachable(RegistryError):
    """No HTTP answer at all: refused connection, DNS failure, TLS failure, timeout."""


class NotARegistry(RegistryError):
    """Something answered on the URL, but ``/v2/`` is not a registry API (HTML page, 404, ...)."""


class AuthenticationFailed(RegistryError):
    """Credentials missing or refused (401 after trying every credential we have)."""


class ScopeRefused(AuthenticationFailed):
    """A token server or registry refused one scope (``repository:x:delete``); the scope is named."""

    def __init__(self, message: str, *, scope: str, status: int | None = None):
        super().__init__(message, status=status, code="DENIED")
        self.scope = scope


class DeleteDisabled(RegistryError):
    """405 UNSUPPORTED on DELETE: the registry runs with ``storage.delete.enabled: false``."""


class DigestMismatch(RegistryError):
    """A manifest body does not hash to the digest it was asked for or announced with."""


class RepositoryNotFound(RegistryError):
    """404 NAME_UNKNOWN for a repository."""


# --- the inventory ------------------------------------------------------------------------------------------


class InventoryError(RegdbError):
    """The inventory file or database cannot be used (missing directory, not SQLite, newer schema, locked)."""


class InventoryBusy(InventoryError):
    """Another regdb run holds the inventory's write lock."""


class SchemaTooNew(InventoryError):
    """The inventory was written by a newer regdb (its Alembic revision is unknown to this one)."""


class ReadOnlyViolation(InventoryError):
    """A statement given to ``regdb sql`` tried to write, attach or change the journal."""


# --- selecting and removing ---------------------------------------------------------------------------------


class SelectorError(RegdbError):
    """A selector the user typed is invalid (bad version, bad regex, missing -t/-re); a usage error."""


class IntersectionError(RegdbError):
    """A selected digest is also used by a tag or repository outside the selection."""

    def __init__(self, message: str, *, repo: str, digest: str, others: list[str]):
        super().__init__(message)
        self.repo = repo
        self.digest = digest
        self.others = others


class IncompleteInventory(RegdbError):
    """A removal touches a repository whose last listing was incomplete (``repos.incomplete``), or a digest
    shared with one: the inventory may not hold every tag that protects it."""

    def __init__(self, message: str, *, repo: str):
        super().__init__(message)
        self.repo = repo


class NoCatalog(RegdbError):
    """The registry does not serve ``_catalog``, so a removal cannot check the repositories outside the
    selection; the caller may accept checking only the repositories in the inventory (``only_named_repos``)."""


class RemovalIncomplete(RegdbError):
    """Some planned deletions failed; ``result`` says which were and were not done."""

    def __init__(self, message: str, *, result):
        super().__init__(message)
        self.result = result


class PolicyError(RegdbError):
    """A retention policy file is invalid; the message names the line."""


# --- the inventory as a data source -------------------------------------------------------------------------


class SqlError(RegdbError):
    """A statement given to ``regdb sql`` failed; the message is the database's own, on one line."""


# --- reaching registries ------------------------------------------------------------------------------------


class TLSSetupError(RegdbError):
    """A CA bundle (``-v``), client certificate (``-cert``) or client key (``-key``) file that does not exist."""
