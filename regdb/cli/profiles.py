"""Profiles: named registries in ``$XDG_CONFIG_HOME/regdb/config.toml`` (``~/.config/regdb/config.toml``).

    default = "prod"                      # used when no profile is named

    [profiles.prod]
    registry = "registry.example.com"
    user = "ci"
    password_env = "PROD_REGISTRY_TOKEN"  # or password_file = "...", password_command = ["pass", "show", "reg"]
    db = "~/inventories/prod.db"
    jobs = 8

Where a setting comes from, first match wins: a command-line flag; the profile named with ``--profile`` /
``REGDB_PROFILE``; an environment variable (``REGISTRY``, ``REGISTRY_USER``, ...); the default profile.

Safety: a profile cannot turn off a safeguard (``yes``, ``no_match_all_tags``, ``no_raise_intersecting_repo``,
``only_named_repos``, ``verify = "None"``): those stay per command, typed. A password in clear is accepted only
from a file nobody else can read (mode 0600). A profile's credentials and inventory go only with its own
registry: with another registry given by flag or environment, they are left out, so they never reach
another host.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from regdb.registry.reference import normalize_url
from regdb.errors import RegdbError

# A config file is a few profiles; anything larger is not one (and is not read into memory).
MAX_CONFIG_BYTES = 1 << 20
# password_command asks a password manager, which may prompt; it must not hang a cron job for ever.
PASSWORD_COMMAND_SECONDS = 30
# A password or token is at most a few KiB (a JWT); more is a wrong file or command.
MAX_PASSWORD_BYTES = 64 << 10

# Profile key -> type; the names are those of the global options (their long flag without dashes).
SETTINGS: dict[str, type | tuple[type, ...]] = {
    "registry": str,
    "user": str,
    "digest_auth": bool,
    "client_cert": str,
    "client_key": str,
    "verify": str,
    "db": str,
    "jobs": int,
    "rate": (int, float),
    "use_get_manifest": bool,
    "log_level": str,
}
# The bounds of the matching flags (-j, --rate, -l), so a profile cannot set what a flag could not.
MAX_JOBS = 256
MIN_RATE = 0.1
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
PASSWORD_SOURCES = ("password", "password_env", "password_file", "password_command")
# Bound to the registry: taken from a profile only together with that profile's registry.
REGISTRY_BOUND = ("user", "client_cert", "client_key", "db")
# Safeguards stay on the command line of each command: a profile that could switch them off would make every
# command of that profile unsafe without a word on the command line.
REFUSED = {
    "yes": "confirmation is asked per command (--yes)",
    "no_match_all_tags": "--no-match-all-tags is given per command",
    "no_raise_intersecting_repo": "--no-raise-intersecting-repo is given per command",
    "only_named_repos": "--only-named-repos is given per command",
}
PATH_KEYS = ("client_cert", "client_key", "verify", "db", "password_file")


class ProfileError(RegdbError):
    """The config file or a profile in it is wrong: the message names the file and the profile."""


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(base) / "regdb" / "config.toml"


@dataclass
class Profile:
    name: str
    settings: dict[str, Any]
    password: Callable[[], str] | None  # reads the credential when a command needs it, not before


@dataclass
class Config:
    path: Path
    default: str | None
    profiles: dict[str, Profile]

    def get(self, name: str) -> Profile:
        if name not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise ProfileError(f"{self.path}: no profile {name!r} (profiles: {known})")
        return self.profiles[name]


def load_config(path: Path | None = None) -> Config | None:
    """The config file, checked whole; None when there is none."""
    path = config_path() if path is None else path
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ProfileError(f"{path}: {error.strerror}") from None
    if info.st_size > MAX_CONFIG_BYTES:
        raise ProfileError(f"{path}: {info.st_size} bytes; a config file is at most {MAX_CONFIG_BYTES}")
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as error:
        raise ProfileError(f"{path}: {error}") from None
    private = not info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    unknown = set(data) - {"default", "profiles"}
    if unknown:
        raise ProfileError(f"{path}: unknown key {sorted(unknown)[0]!r} (expected 'default' and [profiles.NAME])")
    default = data.get("default")
    if default is not None and not isinstance(default, str):
        raise ProfileError(f"{path}: default must be a profile name")
    tables = data.get("profiles", {})
    if not isinstance(tables, dict):
        raise ProfileError(f"{path}: profiles must be tables: [profiles.NAME]")
    profiles = {name: _profile(path, name, table, private, info.st_mode) for name, table in tables.items()}
    config = Config(path, default, profiles)
    if default is not None:
        config.get(default)
    return config


def _profile(path: Path, name: str, table: Any, private: bool, mode: int) -> Profile:
    where = f"{path}: profile {name!r}"
    if not isinstance(table, dict):
        raise ProfileError(f"{where}: must be a table ([profiles.{name}])")
    settings: dict[str, Any] = {}
    password = None
    sources = [key for key in PASSWORD_SOURCES if key in table]
    if len(sources) > 1:
        raise ProfileError(f"{where}: give one of {', '.join(sources)}, not several")
    for key, value in table.items():
        if key in REFUSED:
            raise ProfileError(f"{where}: {key!r} cannot be set in a profile: {REFUSED[key]}")
        if key in PASSWORD_SOURCES:
            password = _password_source(where, key, value, private, mode)
            continue
        if key not in SETTINGS:
            import difflib

            close = difflib.get_close_matches(key, [*SETTINGS, *PASSWORD_SOURCES], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ProfileError(f"{where}: unknown key {key!r}{hint}")
        wanted = SETTINGS[key]
        if isinstance(value, bool) and wanted is not bool or not isinstance(value, wanted):
            raise ProfileError(f"{where}: {key} must be {_kind(wanted)}, not {value!r}")
        if key == "verify" and value == "None":
            raise ProfileError(f"{where}: verify = \"None\" (no TLS verification) cannot be set in a profile: "
                               "give the registry's CA bundle, or -v None on the command")
        if key == "jobs" and not 1 <= value <= MAX_JOBS or key == "rate" and value < MIN_RATE:
            raise ProfileError(f"{where}: {key} = {value} is out of range (jobs 1..{MAX_JOBS}, rate >= {MIN_RATE})")
        if key == "log_level" and value.lower() not in LOG_LEVELS:
            raise ProfileError(f"{where}: log_level must be one of {', '.join(LOG_LEVELS)}")
        if key == "registry":
            try:
                value = normalize_url(value)
            except RegdbError as error:
                raise ProfileError(f"{where}: {error}") from None
        if key in PATH_KEYS:
            value = os.path.expanduser(value)
        settings[key] = value
    if (password is not None or "user" in settings) and "registry" not in settings:
        raise ProfileError(f"{where}: credentials need the registry they are for (registry = ...)")
    return Profile(name, settings, password)


def _kind(wanted) -> str:
    return {str: "text", bool: "true or false", int: "a whole number"}.get(wanted, "a number")


def _password_source(where: str, key: str, value: Any, private: bool, mode: int) -> Callable[[], str]:
    if key == "password":
        if not isinstance(value, str):
            raise ProfileError(f"{where}: password must be text")
        if not private:
            raise ProfileError(
                f"{where}: a password in clear needs a file only you can read (mode 0600, this one is "
                f"{stat.S_IMODE(mode):04o}): chmod 600 it, or use password_env, password_file or password_command"
            )
        return lambda: value
    if key == "password_env":
        if not isinstance(value, str) or not value:
            raise ProfileError(f"{where}: password_env must name an environment variable")

        def from_env() -> str:
            if value not in os.environ:
                raise ProfileError(f"{where}: password_env names {value}, which is not set")
            return os.environ[value]

        return from_env
    if key == "password_file":
        if not isinstance(value, str) or not value:
            raise ProfileError(f"{where}: password_file must be a path")
        file = Path(os.path.expanduser(value))

        def from_file() -> str:
            try:
                with file.open("rb") as handle:
                    data = handle.read(MAX_PASSWORD_BYTES + 1)
            except OSError as error:
                raise ProfileError(f"{where}: password_file {file}: {error.strerror}") from None
            if len(data) > MAX_PASSWORD_BYTES:
                raise ProfileError(f"{where}: password_file {file} is over {MAX_PASSWORD_BYTES} bytes")
            return data.decode("utf-8").rstrip("\r\n")

        return from_file
    if not (isinstance(value, list) and value and all(isinstance(part, str) for part in value)):
        raise ProfileError(f"{where}: password_command must be a list: [\"pass\", \"show\", \"registry\"]")

    def from_command() -> str:
        import subprocess

        try:
            done = subprocess.run(value, capture_output=True, timeout=PASSWORD_COMMAND_SECONDS, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ProfileError(f"{where}: password_command {value[0]}: {error}") from None
        if done.returncode != 0:
            # Its stderr is not echoed: a password manager may print what it was asked for.
            raise ProfileError(f"{where}: password_command {value[0]} exited with status {done.returncode}")
        if len(done.stdout) > MAX_PASSWORD_BYTES:
            raise ProfileError(f"{where}: password_command {value[0]} printed over {MAX_PASSWORD_BYTES} bytes")
        return done.stdout.decode("utf-8").rstrip("\r\n")

    return from_command


# --- resolution ----------------------------------------------------------------------------------------------


@dataclass
class Resolved:
    values: dict[str, Any]
    password: Callable[[], str] | None
    profile: str | None


def resolve(values: Mapping[str, Any], source_of: Callable[[str], str], named: str | None,
            config: Config | None) -> Resolved:
    """The global options in effect. ``values``: click's values by option name; ``source_of(name)``: where
    click took each from, "command line", "environment" or "default"; ``named``: --profile / REGDB_PROFILE."""
    values = dict(values)
    if config is None:
        if named:
            raise ProfileError(f"no profile {named!r}: {config_path()} does not exist")
        return Resolved(values, None, None)
    explicit = config.get(named) if named else None
    fallback = config.get(config.default) if config.default and not named else None
    password = None
    for profile, outranks_env in ((explicit, True), (fallback, False)):
        if profile is None:
            continue
        theirs = profile.settings.get("registry")
        # Their credentials and inventory only with their registry, never with another named elsewhere.
        ours = _registry_in_effect(values, source_of, profile, outranks_env)
        same_registry = theirs is None or (ours is not None and normalize_url(ours) == theirs)
        for key, value in profile.settings.items():
            if key in REGISTRY_BOUND and not same_registry:
                continue
            if _open_for(key, source_of, outranks_env):
                values[key] = value
        if profile.password is not None and same_registry and _open_for("password", source_of, outranks_env) \
                and _open_for("user", source_of, outranks_env):
            password = profile.password
    return Resolved(values, password, named or (fallback.name if fallback else None))


def _open_for(key: str, source_of: Callable[[str], str], outranks_env: bool) -> bool:
    source = source_of(key)
    return source == "default" or (source == "environment" and outranks_env)


def _registry_in_effect(values, source_of, profile: Profile, outranks_env: bool) -> str | None:
    if "registry" in profile.settings and _open_for("registry", source_of, outranks_env):
        return profile.settings["registry"]
    return values.get("registry")
