"""The suite's fixtures come from plugin modules of the rig (tests/rig/), so no test imports a fixture by
name: the registry processes and pushers (rig/fixtures.py) and a PostgreSQL server (rig/pg.py)."""

pytest_plugins = ["tests.rig.fixtures", "tests.rig.pg"]
