"""The test rig: real components for the suite, `make bench` and `make demo`, one concept per module.

    registry      a real ``docker-registry`` process on loopback (config, start, stop, kill, garbage-collect)
    pusher        images built in Python and pushed over the registry HTTP API
    layout        OCI image layouts on disk, copied into a registry with skopeo
    media         media types and canonical JSON bytes (so digests)
    loopback      free ports on 127.0.0.1
    fixtures      the registry fixtures (``registry``, ``fresh_registry``, ``pusher``, ...): a pytest plugin
    pg            a real PostgreSQL and its fixtures (``postgres_server``, ``pg_url``): a pytest plugin
    cli           the one way tests run the CLI in-process (``run``), and ``dregutil``'s
    state         the registry's and an inventory's state side by side, read from outside regdb
    fault_proxy   a TCP proxy that injects faults between regdb and a registry
    http_proxy    forwarding HTTP proxies that fail chosen DELETEs or answer like an OCI 1.1 registry
    hostile       a stub registry serving whatever JSON a test sets
    secure        the real registry behind TLS, a mandatory client certificate and htpasswd
    stub          a v2 API stub with switches for what distribution 2.8 never does (Link styles, a HEAD
                  answering 405, redirected blobs, Digest auth)
    pki           a CA and the certificates it issues
    tokenserver   a token server for the registry's token mode
    live          the ``regdb listen`` process beside a registry that notifies it
    selections    hand-built inventories and generated queries of the selector and sqlite3-reader tests
    retention, summaries, dataset, mount   helpers of the retention, BI, data-source and file-fault tests

The fixture modules reach every test through ``pytest_plugins`` in tests/conftest.py: no test imports a
fixture by name. Run from the repository root, ``python -m bench.bench`` and ``python -m scripts.demo``
import this package as ``tests.rig``.
"""
