"""Retention policies: rules per repository pattern, evaluated as one plan across the registry.

A policy is a TOML file::

    # never touched, in any repository
    protect = ["latest", "prod-*", "re:^release-"]
    max_delete = 500                  # refuse a plan deleting more manifests than this (unattended runs)

    [[rule]]
    name = "releases"                 # optional, for the plan
    repos = ["team/*"]                # glob (* also crosses /) or re:REGEX; required
    keep_latest = 10                  # the newest 10 images stay
    order_by = "version"              # or "created"

    [[rule]]
    name = "pull requests"
    repos = ["team/*", "re:^ci/"]
    tags = ["pr-*"]                   # which tags the rule looks at: glob, re:REGEX, <1.4 (a version), a name
    keep = ["pr-1"]                   # tags whose digests this rule's repositories keep
    older_than = "14d"                # 12h, 90d, 4w, or an ISO date

    [[rule]]
    name = "leftovers"
    repos = ["*"]
    untagged = true                   # manifests no tag and no index holds
    older_than = "7d"

Within a rule the selectors combine (AND): ``tags`` narrows the tags looked at, ``keep_latest`` keeps the
newest, ``older_than`` / ``newer_than`` bound the age; a rule without any of them, or with only ``keep``,
removes nothing and only protects. Across rules, **keeping wins**: a digest is removed when some rule selects
it and no rule matching its repository keeps it (by ``keep``, by ``keep_latest``, or by the file's
``protect``), so each rule's keeps are a guarantee whatever the other rules say. Everything is one selection,
planned and removed by ``regdb.cleanup`` as one run: signatures go with their subject, an index's children
with it, and the bytes a garbage collection frees are counted once.

``RetentionQuery`` is the one-rule case: ``remove-tags`` with ``--keep-latest`` / ``--older-than`` /
``--newer-than`` / ``--untagged``.

Errors name the line: TOML syntax errors as ``tomllib`` reports them, and for a valid TOML file with a wrong
key or value, the line of that key (or of the offending item of a list).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import re
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import Connection, Engine, case, literal, select, tuple_

from regdb.inventory import models
from regdb.errors import PolicyError, SelectorError
from regdb.inventory.registries import require_registry
from regdb.cleanup.plan import Plan, TagQuery, plan_removal, refresh_selection
from regdb.selection.common import values
from regdb.selection.retention import MAX_KEEP_LATEST, ORDERS, Retention, is_digest_tag
from regdb.selection.selectors import (
    Selected,
    Selection,
    TagFilter,
    ensure_sql_functions,
    install_sql_functions,
    query_tags,
    repo_clause,
)
from regdb.selection.patterns import pattern_matches, split_patterns
from regdb.versions import compile_regex

__all__ = [
    "Policy",
    "PolicyPlan",
    "PolicyQuery",
    "RetentionQuery",
    "Rule",
    "RuleReport",
    "evaluate",
    "load_policy",
    "parse_policy",
    "plan_policy",
]

_tags = models.Tag.__table__
_repos = models.Repo.__table__
_digests = models.Digest.__table__

TOP_KEYS = ("protect", "rule", "max_delete")
RULE_KEYS = ("name", "repos", "tags", "keep", "keep_latest", "order_by", "older_than", "newer_than", "untagged",
             "match_all_tags", "not_pulled_for", "keep_pulled_within")


# --- the policy -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    index: int  # 1-based, in file order
    name: str | None
    line: int  # of its [[rule]] header
    repos: tuple[str, ...]
    tags: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    keep_latest: int | None = None
    order_by: str | None = None
    older_than: str | None = None
    newer_than: str | None = None
    untagged: bool = False
    match_all_tags: bool = True
    not_pulled_for: str | None = None  # retention by use (issue 15): see regdb.inventory.use
    keep_pulled_within: str | None = None

    @property
    def label(self) -> str:
        return f"rule {self.index}" + (f" ({self.name})" if self.name else "")

    @property
    def removes(self) -> bool:
        """A rule with no selector only protects (its ``keep``)."""
        return bool(self.tags or self.keep_latest is not None or self.older_than or self.newer_than
                    or self.untagged or self.not_pulled_for)

    def retention(self, *, within=None, now=None) -> Retention:
        return Retention(keep_latest=self.keep_latest, order_by=self.order_by, older_than=self.older_than,
                         newer_than=self.newer_than, untagged=self.untagged, within=within, now=now,
                         not_pulled_for=self.not_pulled_for, keep_pulled_within=self.keep_pulled_within)

    def describe(self) -> str:
        parts = [f"repos {', '.join(self.repos)}"]
        if self.tags:
            parts.append(f"tags {', '.join(self.tags)}")
        retention = self.retention().describe() if self.removes else "removes nothing (keep only)"
        if retention:
            parts.append(retention)
        if self.keep:
            parts.append(f"keep {', '.join(self.keep)}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    protect: tuple[str, ...] = ()
    source: str = "policy"
    max_delete: int | None = None  # a plan deleting more manifests is refused before anything is deleted

    def as_dict(self) -> dict:
        return {"source": self.source, "protect": list(self.protect), "max_delete": self.max_delete,
                "rules": [{"index": r.index, "name": r.name, "describe": r.describe()} for r in self.rules]}


def load_policy(path) -> Policy:
    """Read and validate a policy file; ``PolicyError`` names the file and line of any mistake."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise PolicyError(f"cannot read policy file {path}: {reason}") from None
    return parse_policy(text, source=str(path))


_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def parse_policy(text: str, *, source: str = "policy") -> Policy:
    """Validate ``text`` as a policy (see the module docstring)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        found = _TOML_POSITION.search(message)
        if found is None:
            raise PolicyError(f"{source}: {message}") from None
        where = f"line {found.group(1)}, column {found.group(2)}" if found.group(1) else \
            f"line {max(len(text.splitlines()), 1)}"
        raise PolicyError(f"{source}, {where}: {message[:found.start()]}") from None
    return _Validator(text, source).policy(document)


class _Validator:
    """Checks a parsed document, turning each mistake into ``PolicyError`` with the line it is on."""

    def __init__(self, text: str, source: str):
        self.source = source
        self.lines = text.splitlines()
        self.rule_lines: list[int] = []  # line of each [[rule]] header
        # (section, key) -> (first line, last line) of its value; section None = top level, n = n-th rule
        self.spans: dict[tuple[int | None, str], tuple[int, int]] = {}
        self._index()

    def _index(self) -> None:
        header = re.compile(r"^\s*\[\[\s*rule\s*\]\]\s*(#.*)?$")
        other_header = re.compile(r"^\s*\[")
        key = re.compile(r"""^\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*=""")
        section: int | None = None
        other = False  # inside a table that is neither the top level nor a [[rule]]
        last: tuple[int | None, str] | None = None
        for number, line in enumerate(self.lines, start=1):
            if header.match(line):
                self.rule_lines.append(number)
                section, other, last = len(self.rule_lines), False, None
                continue
            if other_header.match(line) and not key.match(line):
                other, last = True, None
                continue
            found = key.match(line)
            if found and not other:
                name = next(g for g in found.groups() if g is not None)
                last = (section, name)
                self.spans.setdefault(last, (number, number))
            elif last is not None and line.strip() and not line.strip().startswith("#"):
                first, _ = self.spans[last]
                self.spans[last] = (first, number)  # a value continued over several lines (an array)

    def line_of(self, rule: int | None, key: str | None = None, item: str | None = None) -> int:
        """The line of ``key`` in the top level or the ``rule``-th rule, or of ``item`` within its value."""
        span = self.spans.get((rule, key)) if key else None
        if span is None:
            if rule is not None and rule <= len(self.rule_lines):
                return self.rule_lines[rule - 1]
            return 1
        if item is not None:
            for number in range(span[0], span[1] + 1):
                line = self.lines[number - 1]
                if f'"{item}"' in line or f"'{item}'" in line:
                    return number
        return span[0]

    def fail(self, message: str, rule: int | None = None, key: str | None = None, item: str | None = None,
             label: str | None = None) -> NoReturn:
        where = f"{self.source}, line {self.line_of(rule, key, item)}"
        raise PolicyError(f"{where}: {label + ': ' if label else ''}{message}")

    def policy(self, document: dict) -> Policy:
        for key in document:
            if key not in TOP_KEYS:
                self.fail(_unknown(key, TOP_KEYS, "at the top of a policy"), key=key)
        protect = self.patterns(document.get("protect", []), None, "protect", None)
        rules_value = document.get("rule")
        if not rules_value:
            self.fail("no rules: add at least one [[rule]] table with repos = [...]", key="rule")
        if not isinstance(rules_value, list) or not all(isinstance(r, dict) for r in rules_value):
            self.fail("'rule' must be tables: write each rule as [[rule]]", key="rule")
        rules = tuple(self.rule(index, value) for index, value in enumerate(rules_value, start=1))
        max_delete = document.get("max_delete")
        if max_delete is not None and (not isinstance(max_delete, int) or isinstance(max_delete, bool)
                                       or max_delete < 0):
            self.fail(f"max_delete must be a whole number of at least 0, not {max_delete!r}", key="max_delete")
        return Policy(rules=rules, protect=protect, source=self.source, max_delete=max_delete)

    def rule(self, index: int, value: dict) -> Rule:
        name = value.get("name")
        label = f"rule {index}" + (f" ({name})" if isinstance(name, str) and name else "")
        for key in value:
            if key not in RULE_KEYS:
                self.fail(_unknown(key, RULE_KEYS, "in a rule"), index, key, label=label)
        if name is not None and not isinstance(name, str):
            self.fail("name must be a string", index, "name", label=label)
        if "repos" not in value:
            self.fail("repos is required: the repositories the rule applies to (glob or re:REGEX)", index,
                      label=label)
        repos = self.strings(value["repos"], index, "repos", label)
        if not repos:
            self.fail("repos is empty: name at least one repository pattern", index, "repos", label=label)
        for pattern in repos:
            if pattern.startswith("re:"):
                self.check(lambda p=pattern: compile_regex(p[3:]), index, "repos", pattern, label)
        tags = self.patterns(value.get("tags", []), index, "tags", label)
        keep = self.patterns(value.get("keep", []), index, "keep", label)
        keep_latest = value.get("keep_latest")
        if keep_latest is not None and (not isinstance(keep_latest, int) or isinstance(keep_latest, bool)
                                        or not 1 <= keep_latest <= MAX_KEEP_LATEST):
            self.fail(f"keep_latest must be a whole number from 1 to {MAX_KEEP_LATEST:,}, not "
                      f"{keep_latest!r:.40}", index, "keep_latest", label=label)
        order_by = value.get("order_by")
        if order_by is not None:
            if order_by not in ORDERS:
                self.fail(f"order_by must be one of {', '.join(repr(o) for o in ORDERS)}, not {order_by!r}",
                          index, "order_by", label=label)
            if keep_latest is None:
                self.fail("order_by only orders keep_latest: give keep_latest too", index, "order_by",
                          label=label)
        ages = {}
        for key in ("older_than", "newer_than", "not_pulled_for", "keep_pulled_within"):
            ages[key] = self.age(value.get(key), index, key, label)
        flags = {}
        for key, default in (("untagged", False), ("match_all_tags", True)):
            flag = value.get(key, default)
            if not isinstance(flag, bool):
                self.fail(f"{key} must be true or false, not {flag!r}", index, key, label=label)
            flags[key] = flag
        if flags["untagged"]:
            for key in ("tags", "keep", "keep_latest", "match_all_tags"):
                if key in value:
                    self.fail(f"{key} does not apply to untagged = true (untagged manifests have no tags): "
                              "put it in a rule of its own", index, key, label=label)
        return Rule(index=index, name=name, line=self.line_of(index), repos=repos, tags=tags, keep=keep,
                    keep_latest=keep_latest, order_by=order_by, older_than=ages["older_than"],
                    newer_than=ages["newer_than"], untagged=flags["untagged"], match_all_tags=flags["match_all_tags"],
                    not_pulled_for=ages["not_pulled_for"], keep_pulled_within=ages["keep_pulled_within"])

    def strings(self, value: Any, rule: int | None, key: str, label: str | None) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            self.fail(f"{key} must be a string or a list of strings", rule, key, label=label)
        for item in items:
            if not isinstance(item, str) or not item.strip():
                self.fail(f"{key} must hold non-empty strings, not {item!r}", rule, key, label=label)
        return tuple(item.strip() for item in items)

    def patterns(self, value: Any, rule: int | None, key: str, label: str | None) -> tuple[str, ...]:
        patterns = self.strings(value, rule, key, label)
        for pattern in patterns:
            self.check(lambda p=pattern: split_patterns([p]), rule, key, pattern, label)
        return patterns

    def age(self, value: Any, rule: int, key: str, label: str) -> str | None:
        if value is None:
            return None
        if isinstance(value, (_dt.date, _dt.datetime)):  # TOML's own dates: older_than = 2024-01-31
            value = value.isoformat()
        if not isinstance(value, str):
            self.fail(f"{key} must be a duration such as \"90d\" or a date, not {value!r}", rule, key, label=label)
        self.check(lambda: Retention(older_than=value), rule, key, None, label, strip="older_than: ")
        return value

    def check(self, test, rule, key, item, label, strip: str = "") -> None:
        try:
            test()
        except SelectorError as error:
            message = str(error)
            self.fail(f"{key}: {message[len(strip):] if strip and message.startswith(strip) else message}",
                      rule, key, item, label=label)


def _unknown(key: str, known, where: str) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f" (expected one of: {', '.join(known)})"
    return f"unknown key '{key}' {where}{hint}"


# --- evaluation -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeptTag:
    repo: str
    tag: str
    digest: str
    reason: str

    def as_dict(self) -> dict:
        return {"repo": self.repo, "tag": self.tag, "digest": self.digest, "reason": self.reason}


@dataclass
class RuleReport:
    """What one rule did: the repositories it matched, what it selected, what it kept in them and why."""

    rule: Rule
    repos: list[str]
    selected: list[Selected] = field(default_factory=list)  # selected and removed (first rule that selected)
    kept: list[KeptTag] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"index": self.rule.index, "name": self.rule.name, "describe": self.rule.describe(),
                "repos": self.repos, "selected": [s.as_dict() for s in self.selected],
                "kept": [k.as_dict() for k in self.kept]}


class PolicySelection(Selection):
    """The policy's one selection, with each rule's report (``kept`` is filled in by ``plan_policy``)."""

    def __init__(self, items=(), missing_repos=(), reports=(), kept_pairs=None):
        super().__init__(items, missing_repos)
        self.reports: list[RuleReport] = list(reports)
        # (repo, digest) -> why it is kept (protect, a rule's keep or keep_latest); first reason found
        self.kept_pairs: dict[tuple[str, str], str] = dict(kept_pairs or {})


def matched_repos(conn: Connection, registry_id: int, policy: Policy, among=None) -> dict[int, list[str]]:
    """rule index -> names of the repositories (of ``among``, if given) its patterns match."""
    ensure_sql_functions(conn)  # regdb_match, for the glob and regex patterns on SQLite
    found: dict[int, list[str]] = {}
    for rule in policy.rules:
        statement = select(_repos.c.name).where(
            _repos.c.registry_id == registry_id, repo_clause(rule.repos, _repos.c.name, conn.dialect.name)
        )
        if among is not None:
            statement = statement.where(_repos.c.name.in_(list(among)))
        found[rule.index] = list(conn.execute(statement.order_by(_repos.c.name)).scalars())
    return found


def evaluate(conn: Connection, registry_id: int, policy: Policy, among=None, *, raise_intersecting_repo=True,
             now=None) -> PolicySelection:
    """The one selection of the whole policy: every rule's selection, less what any rule keeps."""
    matched = matched_repos(conn, registry_id, policy, among)
    scope = sorted({name for names in matched.values() for name in names})
    protect_tags, protect_regex = split_patterns(policy.protect)
    kept: dict[tuple[str, str], str] = {}
    reports = []
    chosen: dict[tuple[str, str], Selected] = {}
    for rule in policy.rules:
        report = RuleReport(rule, matched[rule.index])
        reports.append(report)
        names = matched[rule.index]
        if not names:
            continue
        _keep_pairs(conn, registry_id, policy, rule, names, kept)
        if not rule.removes:
            continue
        tags, regex = split_patterns(rule.tags)
        keep_tags, keep_regex = split_patterns(rule.keep)
        if not rule.untagged:  # untagged manifests have no tags to match or protect
            keep_tags, keep_regex = keep_tags + protect_tags, keep_regex + protect_regex
        selection = query_tags(
            conn, registry_id, scope, tags, regex, keep_tags, keep_regex,
            match_all_tags=rule.match_all_tags, raise_intersecting_repo=raise_intersecting_repo,
            retention=rule.retention(within=names, now=now),
        )
        for item in selection:
            chosen.setdefault((item.repo, item.digest), item)
            report.selected.append(item)
    # Keeping wins: what some rule keeps is removed by none.
    for report in reports:
        report.selected = [item for item in report.selected if (item.repo, item.digest) not in kept]
    final = [item for key, item in chosen.items() if key not in kept]
    final.sort(key=lambda item: (item.repo, item.digest))
    return PolicySelection(final, reports=reports, kept_pairs=kept)


def _keep_pairs(conn: Connection, registry_id: int, policy: Policy, rule: Rule, names: list[str],
                kept: dict[tuple[str, str], str]) -> None:
    """Add the (repo, digest) pairs ``rule`` keeps in its repositories, with the reason: the file's ``protect``,
    the rule's ``keep``, its ``keep_latest``."""
    dialect = conn.dialect.name
    repo_ids = list(conn.execute(
        select(_repos.c.id).where(_repos.c.registry_id == registry_id, _repos.c.name.in_(names))
    ).scalars())
    t = _tags.alias("kept_tag")
    base = (
        select(_repos.c.name, t.c.name, _digests.c.digest)
        .join(t, t.c.repo_id == _repos.c.id)
        .join(_digests, _digests.c.id == t.c.digest_id)
        .where(t.c.repo_id.in_(repo_ids))
    )
    for what, patterns in (("protect", policy.protect), ("keep", rule.keep)):
        if not patterns:
            continue
        tags, regex = split_patterns(patterns)
        rows = conn.execute(base.where(TagFilter.parse(tags, regex, protects=True).clause(t, dialect)).order_by(
            _repos.c.name, t.c.name)).all()
        for repo, tag, digest in rows:
            pattern = next(p for p in patterns if pattern_matches(p, tag, protects=True))
            reason = f"protected: {tag} matches '{pattern}'" if what == "protect" else \
                f"{rule.label}: keep, {tag} matches '{pattern}'"
            kept.setdefault((repo, digest), reason)
    if rule.keep_latest is not None:
        tags, regex = split_patterns(rule.tags)
        include = TagFilter.parse(tags, regex)
        ranked = rule.retention().ranked(repo_ids=repo_ids, include=include if include else None, dialect=dialect)
        rows = conn.execute(
            select(_repos.c.name, _digests.c.digest, ranked.c.n)
            .select_from(ranked.join(_repos, _repos.c.id == ranked.c.repo_id)
                         .join(_digests, _digests.c.id == ranked.c.digest_id))
            .where(ranked.c.n <= rule.keep_latest)
        ).all()
        for repo, digest, _place in rows:
            kept.setdefault((repo, digest), f"{rule.label}: newest {rule.keep_latest} by {rule.order_by or 'version'}")


def _explain(conn: Connection, registry_id: int, policy: Policy, report: RuleReport, removed: set,
             kept: dict[tuple[str, str], str], now=None) -> list[KeptTag]:
    """Every tag of the rule's repositories that stays, with why: for a person reading the plan."""
    if not report.repos:
        return []
    rule = report.rule
    dialect = conn.dialect.name
    t = _tags.alias("t")
    tags, regex = split_patterns(rule.tags)
    include = TagFilter.parse(tags, regex)
    retention = rule.retention(now=now)
    repo_ids = list(conn.execute(
        select(_repos.c.id).where(_repos.c.registry_id == registry_id, _repos.c.name.in_(report.repos))
    ).scalars())

    def flag(clause):
        return case((clause, 1), else_=0)

    columns = [_repos.c.name, t.c.name, _digests.c.digest, _digests.c.created, t.c.version_key,
               flag(include.clause(t, dialect)) if include else literal(1)]
    if rule.keep_latest is not None:
        ranked = retention.ranked(repo_ids=repo_ids, include=include if include else None, dialect=dialect)
        columns.append(flag(tuple_(t.c.repo_id, t.c.digest_id).in_(
            select(ranked.c.repo_id, ranked.c.digest_id).where(ranked.c.n > rule.keep_latest))))
    else:
        columns.append(literal(1))
    columns.append(flag(retention.age_clause(t.c.digest_id)) if (rule.older_than or rule.newer_than) else literal(1))
    if retention.unused_since is not None:  # retention by use (issue 15)
        from regdb.inventory.use import used_since

        columns.append(flag(used_since(t.c.repo_id, t.c.digest_id, retention.unused_since)))
    else:
        columns.append(literal(0))
    rows = conn.execute(
        select(*columns)
        .select_from(t.join(_repos, _repos.c.id == t.c.repo_id).join(_digests, _digests.c.id == t.c.digest_id))
        .where(t.c.repo_id.in_(repo_ids))
        .order_by(_repos.c.name, t.c.version_key.desc().nulls_last(), t.c.name)
    ).all()
    tags_of: dict[tuple[str, str], list[str]] = defaultdict(list)
    for repo, tag, digest, *_ in rows:
        tags_of[(repo, digest)].append(tag)
    result = []
    for repo, tag, digest, created, version_key, matched, beyond, aged, used in rows:
        if (repo, digest) in removed:
            continue
        if is_digest_tag(tag):
            reason = "signature: goes with its subject"
        elif (repo, digest) in kept:
            reason = kept[(repo, digest)]
        elif not rule.removes:
            reason = f"{rule.label} removes nothing"
        elif rule.untagged:
            reason = "tagged (the rule removes untagged manifests)"
        elif not matched:
            reason = "not matched by tags"
        elif rule.keep_latest is not None and rule.order_by != "created" and version_key is None:
            reason = "not a version: keep_latest ranks versions"
        elif (rule.keep_latest is not None and rule.order_by == "created" or rule.older_than or rule.newer_than) \
                and created is None:
            reason = "no build time in its config"
        elif used:
            reason = f"pulled since {retention.unused_since:%Y-%m-%d %H:%M} ({retention.unused_option})"
        elif not aged:
            reason = " and ".join(
                f"not {word} {value}" for word, value in (("older than", rule.older_than),
                                                           ("newer than", rule.newer_than)) if value)
        elif not beyond:
            reason = "among the newest"  # ranked but not selected: only when a tie or a changed state
        else:
            others = [other for other in tags_of[(repo, digest)] if other != tag]
            reason = f"its digest also carries {', '.join(others)}" if others and rule.match_all_tags else \
                "its digest is also in a repository outside the policy"
        result.append(KeptTag(repo, tag, digest, reason))
    return result


# --- planning ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyQuery:
    """A policy as a removal query (``regdb.cleanup.plan.RemovalQuery``): made again on fresh facts by
    ``regdb.cleanup.plan.refresh_selection``.

    ``repos``: the repositories the policy's patterns matched in the inventory before the refresh (those are
    re-read from the registry)."""

    repos: tuple[str, ...]
    policy: Policy
    raise_intersecting_repo: bool = True
    now: Any = None

    untagged = False  # a policy's untagged rules select manifests themselves; no repository is removed whole

    def __post_init__(self):
        object.__setattr__(self, "repos", values(self.repos))

    def select(self, conn: Connection, registry_id: int):
        if not self.repos:
            return PolicySelection(reports=[RuleReport(rule, []) for rule in self.policy.rules])
        return evaluate(conn, registry_id, self.policy, self.repos,
                        raise_intersecting_repo=self.raise_intersecting_repo, now=self.now)


@dataclass
class PolicyPlan:
    """The removal plan of a policy, with each rule's report."""

    plan: Plan
    reports: list[RuleReport]
    policy: Policy

    def rule_of(self) -> dict[tuple[str, str], int]:
        """(repo, digest) of every plan row -> index of the rule it is removed by (children and signatures:
        the rule of what they go with)."""
        owner: dict[tuple[str, str], int] = {}
        for report in self.reports:
            for item in report.selected:
                owner.setdefault((item.repo, item.digest), report.rule.index)
        rows = sorted(self.plan.rows, key=lambda row: row.depth)
        for row in rows:
            if (row.repo, row.digest) in owner:
                continue
            parent = row.parent
            if parent and (row.repo, parent) in owner:
                owner[(row.repo, row.digest)] = owner[(row.repo, parent)]
        return owner

    def as_dict(self) -> dict:
        owner = self.rule_of()
        rules = []
        for report in self.reports:
            entry = report.as_dict()
            entry["remove"] = [row.as_dict() for row in self.plan.rows
                               if owner.get((row.repo, row.digest)) == report.rule.index]
            del entry["selected"]
            rules.append(entry)
        return {"policy": self.policy.source, "rules": rules, "plan": self.plan.as_dict()}


def plan_policy(engine: Engine, client, policy: Policy, *, refresh: bool = True, jobs: int = 16,
                raise_intersecting_repo: bool = True, now=None, announce=None) -> PolicyPlan:
    """Evaluate ``policy`` on fresh facts (the matched repositories are re-read from the registry unless
    ``refresh=False``) and plan the removal of its one selection."""
    with engine.connect() as conn:
        registry_id = require_registry(conn, client.ref)
        matched = matched_repos(conn, registry_id, policy)
    repos = sorted({name for names in matched.values() for name in names})
    query = PolicyQuery(tuple(repos), raise_intersecting_repo=raise_intersecting_repo, policy=policy, now=now)
    registry_id, selection, _, refreshed = refresh_selection(engine, client, query, refresh=refresh and bool(repos),
                                                             jobs=jobs, announce=announce)
    plan = plan_removal(engine, registry_id, selection)
    plan.refreshed = refreshed
    removed = {(row.repo, row.digest) for row in plan.rows}
    install_sql_functions(engine)
    with engine.connect() as conn:
        ensure_sql_functions(conn)
        for report in selection.reports:
            report.kept = _explain(conn, registry_id, policy, report, removed, selection.kept_pairs, now=now)
    return PolicyPlan(plan=plan, reports=selection.reports, policy=policy)


# --- one rule from the command line ------------------------------------------------------------------------------


# ``remove-tags`` with retention selectors (--keep-latest, --older-than, --untagged, ...) is a TagQuery with its
# ``retention`` set; the name stays for the code that knows it.
RetentionQuery = TagQuery
