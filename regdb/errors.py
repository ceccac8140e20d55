"""Named errors raised by the regdb library.

The library never prints and never exits: it raises one of these, and the CLI boundary turns each into a
one-line message with exit status 1 (``RegdbError``) or 2 (``SelectorError``, a usage mistake).
"""

from __future__ import annotations

import re
from collections.abc import Mapping


class RegdbError(Exception):
    """Base class: everything regdb raises on purpose. ``str(error)`` is the one line a user sees: control
    characters other than a newline are escaped, so nothing in it drives a terminal. (A newline is regdb's own,
    in a multi-line report; text from a registry is quoted with ``reference.printable``, newlines escaped.)

    A message about the caller's settings names them as fields: ``{keep_latest}`` (or ``{keep_latest:N}``, with
    the placeholder a command line shows after its flag) in the message and ``"keep_latest"`` in ``fields``.
    ``str(error)`` shows the library's names (``keep_latest``); the command line words the same error with its
    flags (``error.worded({"keep_latest": "--keep-latest"})`` -> ``--keep-latest N``) and the policy loader with
    its keys. ``fields`` is also there for a program to read."""

    def __init__(self, message: str = "", *args, fields: tuple[str, ...] = ()):
        from regdb.redact import redact_urls
        from regdb.text import escape_controls

        if isinstance(message, str):
            message = redact_urls(message)  # a database URL's password, wherever a message names the URL
        if isinstance(message, str):
            message = escape_controls(message, keep_newlines=True)
        self.template = message if isinstance(message, str) else str(message)
        self.fields = tuple(fields)
        super().__init__(self.worded({}), *args)

    def worded(self, names: Mapping[str, str]) -> str:
        """The message with each field named as ``names`` says (a field not in it keeps its own name, without
        a placeholder)."""
        text = self.template
        for name in self.fields:
            def word(match: re.Match, name: str = name) -> str:
                if name not in names:
                    return name
                return names[name] + (f" {match.group(1)}" if match.group(1) else "")

            text = re.sub(r"\{" + re.escape(name) + r"(?::([^{}]*))?\}", word, text)
        return text


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


class UnsafeURL(RegistryError):
    """A URL the registry told us to follow (Link, Location, redirect, token realm) that regdb refuses: not
    http(s), malformed, or on another origin while it would carry our credentials. The message names it."""


class ResponseTooLarge(RegistryError):
    """An answer over one of regdb's bounds (a body's bytes, pages of a listing, tags of a repository)."""


class InvalidName(RegistryError):
    """A repository name, tag or digest outside the OCI distribution grammar."""


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


class SettingError(SelectorError):
    """Settings that do not go together or are out of range (``client_key`` without ``client_cert``); the
    fields are named (see ``RegdbError``). A usage error on the command line."""


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


class RemovalInterrupted(RemovalIncomplete, KeyboardInterrupt):
    """Ctrl-C stopped a removal; the DELETEs already sent were recorded. ``result`` says what was done.

    Still a ``KeyboardInterrupt``, so that code stopping on Ctrl-C goes on stopping."""


class PlanTooLarge(RegdbError):
    """A removal plan holds more manifests than ``max_delete`` allows; nothing was deleted."""

    def __init__(self, message: str, *, count: int, limit: int):
        super().__init__(message)
        self.count = count
        self.limit = limit


class RestoreRefused(RegdbError):
    """``restore`` cannot bring a run back (blobs gone, a tag moved since); nothing was pushed."""


class ValueOutOfRange(SelectorError):
    """An integer the user gave (``--keep-latest``, a policy rule) outside the range regdb accepts."""


class TooManyValues(SelectorError):
    """More values (``-t``, ``-r``) than regdb accepts in one command."""


class PolicyError(RegdbError):
    """A retention policy file is invalid; the message names the line."""


# --- the inventory as a data source -------------------------------------------------------------------------


class SqlError(RegdbError):
    """A statement given to ``regdb sql`` failed; the message is the database's own, on one line."""


class SqlTimeout(SqlError):
    """A statement given to ``regdb sql`` ran past ``--timeout`` and was interrupted."""


# --- reaching registries ------------------------------------------------------------------------------------


class TLSSetupError(RegdbError):
    """A CA bundle (``-v``), client certificate (``-cert``) or client key (``-key``) file that does not exist."""


# --- mapping foreign exceptions -------------------------------------------------------------------------------


def database_error(error: BaseException) -> InventoryError | None:
    """A database failure (sqlite3, psycopg, through SQLAlchemy) as one line, without the statement SQLAlchemy
    appends (it was 786 KB once); None for anything else."""
    orig = getattr(error, "orig", None)
    module = type(orig if orig is not None else error).__module__ or ""
    if not (module.startswith(("sqlite3", "psycopg", "sqlalchemy"))):
        return None
    text = str(orig if orig is not None else error).strip().splitlines()
    first = text[0][:300] if text else type(error).__name__
    from regdb.redact import redact_urls

    return InventoryError(f"inventory database error: {redact_urls(first)}")
