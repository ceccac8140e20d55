"""The registry fixtures, provided to every test through ``pytest_plugins`` in tests/conftest.py: real
``docker-registry`` processes on loopback (rig/registry.py) and pushers into them."""

from __future__ import annotations

import itertools
import re

import pytest

from regdb.registry.client import RegistryClient
from tests.rig.pusher import Pusher
from tests.rig.registry import REGISTRY_BINARY, RegistryProcess, have_binary, start_registry


@pytest.fixture(scope="session")
def registry_binary() -> str:
    # Fail loudly, not skip: a suite that silently skips every registry test looks green and proves nothing.
    if not have_binary(REGISTRY_BINARY):
        pytest.fail(
            f"{REGISTRY_BINARY!r} not found on PATH: these tests run a real registry. Install it with "
            "`apt-get install docker-registry` (.ci/run does), or point REGDB_TEST_REGISTRY at a binary.",
            pytrace=False,
        )
    return REGISTRY_BINARY


@pytest.fixture(scope="session")
def registry(registry_binary, tmp_path_factory) -> RegistryProcess:
    """One registry for the whole session (delete enabled). Tests sharing it use `repo_name` prefixes and
    must not count repositories, kill it or garbage-collect it: use `fresh_registry` for that."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture
def fresh_registry(registry_binary, tmp_path) -> RegistryProcess:
    """A registry of this test's own (delete enabled), for tests that delete, kill, count or collect."""
    reg = start_registry(tmp_path / "registry")
    yield reg
    reg.stop()


@pytest.fixture
def pusher(registry) -> Pusher:
    # A test that killed the shared registry would make every later test fail obscurely; say so here.
    assert registry.alive(), f"the session registry died:\n{registry.log_tail()}"
    return Pusher(registry.url)


@pytest.fixture
def fresh_pusher(fresh_registry) -> Pusher:
    return Pusher(fresh_registry.url)


_repo_counter = itertools.count(1)


@pytest.fixture
def repo_name(request) -> str:
    """A repository-name prefix unique in the session, like ``t7-test-delete-by-tag``.

    Lowercase, separators never doubled or trailing: valid for the registry's name grammar
    ``[a-z0-9]+([._-][a-z0-9]+)*``. Append ``/app`` etc. for more than one repository per test.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    return f"t{next(_repo_counter)}-{slug}" if slug else f"t{next(_repo_counter)}"


@pytest.fixture(scope="module")
def module_registry(registry_binary, tmp_path_factory):
    """A registry for one test module: populated once by the module, never killed. Tests may add images but
    never delete or count repositories across tests."""
    registry = start_registry(tmp_path_factory.mktemp("registry"))
    yield registry
    registry.stop()


@pytest.fixture
def short_timeouts(monkeypatch):
    """Every ``RegistryClient`` made during the test waits 0.5 s for an answer instead of 60, and backs off
    for hundredths of a second instead of seconds: the faults are the same, the test takes seconds.

    The CLI builds its client with the defaults, so the defaults are what is shortened."""
    defaults = dict(RegistryClient.__init__.__kwdefaults__)
    defaults.update(timeout=(1.0, 0.5), backoff=0.01)
    monkeypatch.setattr(RegistryClient.__init__, "__kwdefaults__", defaults)
    return defaults
