"""The real registry behind what a client must get through: TLS from the test's own CA, a mandatory client
certificate and htpasswd Basic auth (token mode is rig/tokenserver.py). What distribution 2.8 cannot show is
in rig/stub.py."""

from __future__ import annotations

import functools
import shutil
import subprocess
import types
import warnings
from pathlib import Path
from unittest import mock

import requests
from urllib3.exceptions import InsecureRequestWarning

from tests.rig import registry as registry_process
from tests.rig.pki import PKI
from tests.rig.registry import RegistryProcess, start_registry

# --- htpasswd ------------------------------------------------------------------------------------------------


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash, the only kind distribution's htpasswd accepts (docs/registry-behaviour.md).

    The standard library's ``crypt`` (glibc/libxcrypt ``$2b$``) on Python < 3.13, so the suite needs nothing
    extra; ``htpasswd -B`` from apache2-utils where ``crypt`` is gone. Cost 4: the tests need no brute-force
    resistance, and the registry checks the password on every request.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # deprecated since 3.11, removed in 3.13

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        if hashed and hashed.startswith("$2"):
            return hashed
    except (ImportError, ValueError, OSError):
        pass
    if shutil.which("htpasswd") is None:
        raise RuntimeError("no bcrypt available: install apache2-utils (htpasswd) or use Python < 3.13")
    result = subprocess.run(["htpasswd", "-nbB", "-C", "4", "user", password], capture_output=True, text=True,
                            check=True)
    return result.stdout.strip().split(":", 1)[1]


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    path.write_text("".join(f"{user}:{bcrypt_hash(password)}\n" for user, password in users.items()))
    return path


# --- the real registry with TLS, client certificates and htpasswd --------------------------------------------


def start_secure_registry(root: Path, pki: PKI, htpasswd: Path) -> RegistryProcess:
    """distribution 2.8 serving TLS from ``pki`` with ``clientcas`` (a client certificate is mandatory) and
    htpasswd Basic auth.

    rig/registry.py polls ``GET /v2/`` without a client certificate until the registry answers, and a clientcas
    registry refuses that handshake, so the poll would time out. Its ``requests`` name is swapped, for the
    start only, for one whose ``get`` presents our client certificate.
    """
    cert = (str(pki.client.cert_path), str(pki.client.key_path))
    poll = types.SimpleNamespace(get=functools.partial(requests.get, cert=cert),
                                 RequestException=requests.RequestException)
    extra = {
        "auth": {"htpasswd": {"realm": "regdb-test", "path": str(htpasswd)}},
        "http": {"tls": {"certificate": str(pki.server.cert_path), "key": str(pki.server.key_path),
                         "clientcas": [str(pki.ca.cert_path)]}},
    }
    with mock.patch.object(registry_process, "requests", poll), warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)  # the poll does not verify; nothing to warn about
        return start_registry(root, extra=extra)


def tls_session(pki: PKI, auth=None) -> requests.Session:
    """A session for the rig's Pusher against the secure registry. ``trust_env`` off: REQUESTS_CA_BUNDLE in
    the environment would otherwise override ``verify`` (the requests pitfall in docs/registry-behaviour.md)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(pki.ca.cert_path)
    session.cert = (str(pki.client.cert_path), str(pki.client.key_path))
    session.auth = auth
    return session
