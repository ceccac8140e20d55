"""Credentials from the Docker CLI's configuration, for runs without ``-u``: what ``docker login`` stored.

Read the way the Docker CLI reads them (cli/config/configfile, cli/config/credentials, docker-credential-helpers):

- ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``.
- ``credHelpers[<host>]`` names a helper for one registry; otherwise ``credsStore`` names one for all. A helper
  is the program ``docker-credential-<name>``, run as ``docker-credential-<name> get`` with the server address
  on stdin, answering ``{"ServerURL", "Username", "Secret"}``.
- Otherwise ``auths[<key>]``: ``auth`` is base64 of ``user:password`` (older files have ``username`` and
  ``password`` fields), ``identitytoken`` an OAuth2 refresh token from ``docker login`` (user ``<token>``).
- Keys: Docker Hub is stored as ``https://index.docker.io/v1/``; any other registry as ``host[:port]``,
  though older files have ``https://host/v1/`` and the like, which the CLI still matches by stripping the
  scheme and path (``ConvertToHostname``). ``docker.io``, ``index.docker.io`` and ``registry-1.docker.io``
  all mean Docker Hub.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Mapping

from regdb.registry.auth import IDENTITY_TOKEN_USER
from regdb.errors import RegdbError
from regdb.redact import redact

DOCKER_HUB_ADDRESS = "https://index.docker.io/v1/"
DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
HELPER_TIMEOUT = 60  # a keychain may ask the user to unlock it
# docker-credential-helpers' ErrCredentialsNotFound text ("credentials not found in native keychain"): the
# CLI recognizes "not found" by this message, not by the exit status.
_NOT_FOUND = "credentials not found"


class DockerConfigError(RegdbError):
    """The Docker configuration or a credential helper cannot be used; the message names the file or helper."""


class DockerConfigUnreadable(DockerConfigError):
    """config.json exists but cannot be read (permissions, not UTF-8): the CLI warns and goes on anonymously."""


def config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``$HOME/.docker/config.json`` (as the Docker CLI)."""
    if environ.get("DOCKER_CONFIG"):
        return Path(environ["DOCKER_CONFIG"]) / "config.json"
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".docker" / "config.json"


def registry_host(url_or_key: str) -> str:
    """The CLI's ``ConvertToHostname``: drop ``http(s)://`` and any path; lower case (hosts are)."""
    text = url_or_key.strip()
    for prefix in ("http://", "https://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
            break
    return text.split("/", 1)[0].lower()


def server_address(registry_url: str) -> str:
    """The key ``docker login`` uses for a registry: Hub's legacy index URL, else ``host[:port]``."""
    host = registry_host(registry_url)
    return DOCKER_HUB_ADDRESS if host in DOCKER_HUB_HOSTS else host


def docker_credentials(registry_url: str, *, environ: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """``(user, secret)`` that ``docker login`` stored for ``registry_url``, or None when there are none.

    ``user == "<token>"`` means ``secret`` is an identity token (``RegistryAuth`` exchanges it with OAuth2).
    Raises ``DockerConfigError`` for a malformed config.json or a credential helper that fails for a reason
    other than "credentials not found".
    """
    path = config_path(environ)
    config = _load(path)
    if config is None:
        return None
    host = registry_host(registry_url)
    address = server_address(registry_url)
    helpers = config.get("credHelpers", {}) if config.get("credHelpers") is not None else {}
    if not isinstance(helpers, dict):
        raise DockerConfigError(f"{path}: 'credHelpers' is not an object")
    helper = next((helpers[k] for k in _keys(host, address) if isinstance(helpers.get(k), str)), None)
    if helper is None and isinstance(config.get("credsStore"), str) and config["credsStore"]:
        helper = config["credsStore"]
    if helper:
        found = _from_helper(helper, address, path, environ)
        if found is not None:
            return found
        # Not in the helper: fall back to an inline entry (written before the helper was configured); the
        # CLI would stop here, but an entry we can read is better than an anonymous 401.
    auths = config.get("auths") if config.get("auths") is not None else {}
    if not isinstance(auths, dict):
        raise DockerConfigError(f"{path}: 'auths' is not an object")
    key = _find_key(auths, host, address)
    return _from_entry(auths[key], key, path) if key is not None else None


def _keys(host: str, address: str) -> list[str]:
    """Exact keys to try first, in the CLI's order: the server address, then older spellings of it."""
    hosts = [host] if host not in DOCKER_HUB_HOSTS else ["index.docker.io", "docker.io", "registry-1.docker.io"]
    keys = [address]
    for h in hosts:
        keys += [h, f"https://{h}", f"https://{h}/", f"https://{h}/v1/", f"https://{h}/v2/", f"http://{h}"]
    return list(dict.fromkeys(keys))


def _find_key(auths: dict, host: str, address: str) -> str | None:
    for key in _keys(host, address):
        if key in auths:
            return key
    # The CLI's fallback for legacy files: any key whose host part (scheme and path removed) is our host.
    for key in auths:
        other = registry_host(key)
        if other == host or (host in DOCKER_HUB_HOSTS and other in DOCKER_HUB_HOSTS):
            return key
    return None


def _load(path: Path) -> dict | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise DockerConfigUnreadable(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    if not text.strip():
        return None  # docker itself treats an empty file as no configuration
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise DockerConfigError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    if not isinstance(config, dict):
        raise DockerConfigError(f"{path} is not a JSON object")
    return config


def _from_entry(entry, key: str, path: Path) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        raise DockerConfigError(f"{path}: auths[{key!r}] is not an object")
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return IDENTITY_TOKEN_USER, token
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            # Lenient about padding: some tools write it without, and the CLI's decoder copes.
            decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise DockerConfigError(f"{path}: auths[{key!r}].auth is not base64") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise DockerConfigError(f"{path}: auths[{key!r}].auth is not base64 of user:password")
        return user, password
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and user and isinstance(password, str):
        return user, password
    return None  # an empty entry: the CLI writes {} next to a credsStore


def _from_helper(name: str, address: str, path: Path, environ: Mapping[str, str]) -> tuple[str, str] | None:
    program = f"docker-credential-{name}"
    executable = shutil.which(program, path=environ.get("PATH", os.defpath))
    if executable is None:
        raise DockerConfigError(f"credential helper {program} (named in {path}) is not on PATH")
    try:
        result = subprocess.run(
            [executable, "get"], input=address, capture_output=True, text=True, timeout=HELPER_TIMEOUT,
            env=dict(environ),
        )
    except subprocess.TimeoutExpired:
        raise DockerConfigError(f"credential helper {program} did not answer within {HELPER_TIMEOUT} s") from None
    except OSError as error:
        raise DockerConfigError(f"cannot run credential helper {program}: {error.strerror or error}") from None
    output = result.stdout.strip()
    if result.returncode != 0:
        message = output or result.stderr.strip()
        if _NOT_FOUND in message.lower():
            return None
        # Anything else (a locked keychain, gpg without an agent) is an error, as in the Docker CLI: quietly
        # going on without credentials would only surface later as a puzzling 401.
        first = redact(message.splitlines()[0])[:200] if message else "no output"
        raise DockerConfigError(
            f"credential helper {program} failed for {address} (exit {result.returncode}): {first}"
        )
    try:
        answer = json.loads(output)
    except ValueError:
        raise DockerConfigError(f"credential helper {program} answered something that is not JSON") from None
    if not isinstance(answer, dict):
        raise DockerConfigError(f"credential helper {program} answered something that is not a JSON object")
    user, secret = answer.get("Username") or "", answer.get("Secret") or ""
    if not isinstance(user, str) or not isinstance(secret, str):
        raise DockerConfigError(f"credential helper {program} answered a non-string Username or Secret")
    if not secret:
        return None
    return user, secret  # Username "<token>": the secret is an identity token, as the CLI reads it
