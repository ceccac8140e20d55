"""``regdb.connect``: a registry client built exactly the way the ``regdb`` command line builds one.

Credentials: the ones given, else what ``docker login`` stored for the registry (config file and credential
helpers), else anonymous; Basic or bearer tokens as the registry's challenge asks, HTTP Digest on request.
TLS: the system's trust store, a CA bundle file, or no verification at all (said once in the log); a client
certificate with its key in the same file or in a second one.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Callable

from regdb.errors import SettingError

if TYPE_CHECKING:
    from regdb.registry.client import RegistryClient

log = logging.getLogger("regdb")


def connect(
    registry: str,
    *,
    user: str | None = None,
    password: str | Callable[[], str] | None = None,
    docker_config: bool = True,
    digest_auth: bool = False,
    verify: bool | str | os.PathLike = True,
    client_cert: str | os.PathLike | None = None,
    client_key: str | os.PathLike | None = None,
    jobs: int = 16,
    rate: float | None = None,
    use_get_manifest: bool = False,
    quiet_insecure: bool = False,
) -> RegistryClient:
    """A ``RegistryClient`` for ``registry`` (a host, ``https`` assumed, or a URL).

    ``password`` may be a callable, asked only when a password is needed. Without ``user``, the credentials
    ``docker login`` stored for the registry are used when ``docker_config`` is true; an unreadable Docker
    config is logged and skipped (most registries need no credentials). ``verify``: ``True`` (system CAs),
    ``False`` (no verification), or a CA bundle path. Raises ``SettingError`` naming the settings that do not
    go together, ``RegistryError`` for a registry that is not a URL. ``verify=False`` is logged once as a
    warning unless ``quiet_insecure`` (the caller has said so in its own words).

        client = regdb.connect("registry.example.com", user="me", password="secret")
    """
    from regdb.registry.auth import build_auth
    from regdb.registry.client import RegistryClient
    from regdb.registry.reference import normalize_url

    url = normalize_url(registry)
    if client_key is not None and client_cert is None:
        raise SettingError("{client_key} needs {client_cert}", fields=("client_key", "client_cert"))
    if callable(password):
        password = password() if user else None
    if not user and docker_config:
        user, password = _docker_login(url) or (None, None)
    if digest_auth and not user:
        raise SettingError("{digest_auth} needs {user} and {password}", fields=("digest_auth", "user", "password"))
    if verify is False and not quiet_insecure:
        log.warning("TLS certificate verification is disabled")
    cert = (str(client_cert), str(client_key)) if client_key is not None else client_cert
    return RegistryClient(
        url,
        auth=build_auth(user, password, digest=digest_auth),
        verify=verify if isinstance(verify, bool) else str(verify),
        cert=str(cert) if isinstance(cert, os.PathLike) else cert,
        jobs=jobs,
        rate=rate,
        use_get_manifest=use_get_manifest,
    )


def _docker_login(url: str) -> tuple[str, str] | None:
    from regdb.registry.credentials import DockerConfigUnreadable, docker_credentials

    try:
        return docker_credentials(url)
    except DockerConfigUnreadable as error:
        # Only when the registry asks for credentials does the unreadable file matter; its 401 follows this.
        log.warning("%s; going on without its credentials", error)
        return None
