"""The storage report: where a registry's space goes and what a cleanup would free, as numbers and as pictures.

:func:`collect` reads the figures from the views (so they are the numbers ``regdb sql`` gives); :func:`to_json`
and :func:`to_html` render the same figures. The HTML page is self-contained: the charts are inline SVG drawn
by matplotlib's SVG backend, the styles inline, no script, no font or image fetched, so it opens offline and
prints as it shows. matplotlib comes with the ``bi`` extra (``pip install 'regdb[bi]'``); the JSON needs
nothing more than regdb.
"""

from __future__ import annotations

import html
import io
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, inspect, text

from regdb.errors import RegdbError

# Repositories and images drawn and listed: a page, not a dump; `regdb sql` has the rest.
TOP_REPOS = 20
TOP_IMAGES = 10
# Tag age buckets, in days: (label, newer than, older than or equal).
AGE_BUCKETS = (
    ("under 30 days", 0, 30), ("30-90 days", 30, 90), ("90-180 days", 90, 180), ("180-365 days", 180, 365),
    ("over a year", 365, None),
)
# Points on the growth curve drawn from tag_history: one per day would be thousands of points for old history.
GROWTH_POINTS = 60


class ReportError(RegdbError):
    """The report cannot be made (matplotlib missing for the HTML page)."""


@dataclass
class RepoSpace:
    registry: str
    repo: str
    tags: int
    total_bytes: int
    unique_bytes: int
    shared_bytes: int


@dataclass
class Image:
    registry: str
    digest: str
    size: int
    tags: int
    example: str
    """One repo:tag naming it."""


@dataclass
class Report:
    generated_at: str
    registries: list[str]
    repos: int
    tags: int
    total_bytes: int
    unique_bytes: int
    largest_repos: list[RepoSpace]
    reclaimable_bytes: int
    reclaimable_blobs: int
    reclaimable_by_kind: dict[str, int]
    tags_by_age: dict[str, int]
    untagged_manifests: int
    untagged_bytes: int
    index_children: int
    largest_images: list[Image]
    growth: list[tuple[str, int]] | None = field(default=None)
    """(day, tags alive that day) from tag_history; None when the inventory has no tag history."""


def collect(conn: Connection, *, now: datetime | None = None) -> Report:
    """The report's figures, read from the views (and tag_history when the inventory has one)."""
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)

    def rows(sql: str, **params):
        return conn.execute(text(sql), params).all()

    totals = rows("SELECT COUNT(*), COALESCE(SUM(tags), 0), COALESCE(SUM(total_bytes), 0), "
                  "COALESCE(SUM(unique_bytes), 0) FROM repo_stats")[0]
    largest = [
        RepoSpace(r.registry, r.repo, int(r.tags), int(r.total_bytes), int(r.unique_bytes),
                  int(r.total_bytes) - int(r.unique_bytes))
        for r in rows("SELECT registry, repo, tags, total_bytes, unique_bytes FROM repo_stats "
                      "ORDER BY total_bytes DESC, registry, repo LIMIT :n", n=TOP_REPOS)
    ]
    by_kind = {kind: int(size) for kind, size in rows(
        "SELECT kind, COALESCE(SUM(size), 0) FROM reclaimable GROUP BY kind ORDER BY kind")}
    reclaim_blobs = rows("SELECT COUNT(*) FROM reclaimable")[0][0]
    ages = {}
    for label, newer, older in AGE_BUCKETS:
        cutoff_new = (now - timedelta(days=newer)).strftime("%Y-%m-%d %H:%M:%S")
        if older is None:
            count = rows("SELECT COUNT(*) FROM images WHERE created <= :a", a=cutoff_new)[0][0]
        else:
            cutoff_old = (now - timedelta(days=older)).strftime("%Y-%m-%d %H:%M:%S")
            count = rows("SELECT COUNT(*) FROM images WHERE created <= :a AND created > :b",
                         a=cutoff_new, b=cutoff_old)[0][0]
        ages[label] = int(count)
    ages["no build time"] = int(rows("SELECT COUNT(*) FROM images WHERE created IS NULL")[0][0])
    ages["built in the future"] = int(rows("SELECT COUNT(*) FROM images WHERE created > :a",
                                           a=now.strftime("%Y-%m-%d %H:%M:%S"))[0][0])
    # Untagged: digest_usage rows no tag points at; an index's children are untagged by nature, told apart.
    untagged = rows("""
        SELECT COUNT(*), COALESCE(SUM(size), 0) FROM digest_usage
        WHERE tags = 0 AND digest NOT IN (
            SELECT digests.digest FROM digest_children JOIN digests ON digests.id = digest_children.child_id)
    """)[0]
    children = rows("""
        SELECT COUNT(*) FROM digest_usage
        WHERE tags = 0 AND digest IN (
            SELECT digests.digest FROM digest_children JOIN digests ON digests.id = digest_children.child_id)
    """)[0][0]
    images = []
    for r in rows("SELECT registry, digest, size, tags FROM digest_usage WHERE tags > 0 "
                  "ORDER BY size DESC, digest LIMIT :n", n=TOP_IMAGES):
        named = rows("SELECT repo, tag FROM images WHERE registry = :r AND digest = :d ORDER BY repo, tag LIMIT 1",
                     r=r.registry, d=r.digest)
        images.append(Image(r.registry, r.digest, int(r.size), int(r.tags),
                            f"{named[0].repo}:{named[0].tag}" if named else ""))
    return Report(
        generated_at=now.strftime("%Y-%m-%d %H:%M:%S"),
        registries=[name for (name,) in rows("SELECT DISTINCT registry FROM repo_stats ORDER BY registry")],
        repos=int(totals[0]), tags=int(totals[1]), total_bytes=int(totals[2]), unique_bytes=int(totals[3]),
        largest_repos=largest, reclaimable_bytes=sum(by_kind.values()), reclaimable_blobs=int(reclaim_blobs),
        reclaimable_by_kind=by_kind, tags_by_age=ages, untagged_manifests=int(untagged[0]),
        untagged_bytes=int(untagged[1]), index_children=int(children), largest_images=images,
        growth=_growth(conn, now),
    )


def _growth(conn: Connection, now: datetime) -> list[tuple[str, int]] | None:
    """Tags alive at each of up to GROWTH_POINTS days, from tag_history's stretches; None without the table."""
    if "tag_history" not in inspect(conn).get_table_names():
        return None
    changes: dict[str, int] = {}
    for column, sign in (("valid_from", 1), ("valid_to", -1)):
        for day, count in conn.execute(text(
            f"SELECT SUBSTR(CAST({column} AS TEXT), 1, 10) AS day, COUNT(*) FROM tag_history "
            f"WHERE {column} IS NOT NULL GROUP BY SUBSTR(CAST({column} AS TEXT), 1, 10)"
        )):
            changes[day] = changes.get(day, 0) + sign * int(count)
    if not changes:
        return []
    days = sorted(changes)
    first = datetime.strptime(days[0], "%Y-%m-%d")
    span = max((now - first).days, 1)
    step = max(span // GROWTH_POINTS, 1)
    points, alive, index = [], 0, 0
    moment = first
    while moment <= now + timedelta(days=step):
        label = moment.strftime("%Y-%m-%d")
        while index < len(days) and days[index] <= label:
            alive += changes[days[index]]
            index += 1
        points.append((label, alive))
        moment += timedelta(days=step)
    return points


# --- rendering ---------------------------------------------------------------------------------------------------


def to_json(report: Report) -> str:
    return json.dumps(asdict(report), indent=2)


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def to_html(report: Report, *, title: str = "regdb storage report") -> str:
    """One self-contained page: inline SVG charts, inline styles, nothing fetched."""
    try:
        import matplotlib  # noqa: F401 - the charts' library, from the bi extra
    except ImportError:
        raise ReportError("the HTML report draws its charts with matplotlib: pip install 'regdb[bi]'") from None
    esc = html.escape
    sections = [
        _section("Space per repository", "repo-space",
                 f"The {len(report.largest_repos)} largest repositories: the bytes each holds alone (freed once it is "
                 "deleted and a garbage collection runs) and the bytes it shares with other repositories.",
                 _repo_chart(report.largest_repos),
                 _table(["registry", "repository", "tags", "total", "alone", "shared"],
                        [[r.registry, r.repo, r.tags, (r.total_bytes, human_bytes(r.total_bytes)),
                          (r.unique_bytes, human_bytes(r.unique_bytes)), (r.shared_bytes, human_bytes(r.shared_bytes))]
                         for r in report.largest_repos])),
        _section("Reclaimable now", "reclaimable",
                 f"What a garbage collection frees after regdb's deletions: {report.reclaimable_blobs} blobs, "
                 f"{esc(human_bytes(report.reclaimable_bytes))}.",
                 _bar_chart(list(report.reclaimable_by_kind), list(report.reclaimable_by_kind.values()), bytes_axis=True)
                 if report.reclaimable_bytes else "<p class=empty>Nothing to reclaim.</p>",
                 _table(["kind", "bytes"], [[kind, (size, human_bytes(size))]
                                            for kind, size in report.reclaimable_by_kind.items()])),
        _section("Tags by age", "tags-by-age", "Tags by the build time of the image they name.",
                 _bar_chart(list(report.tags_by_age), list(report.tags_by_age.values())),
                 _table(["age", "tags"], [[label, count] for label, count in report.tags_by_age.items()])),
        _section("Untagged manifests", "untagged",
                 "Manifests no tag points at, apart from the per-platform children of an index.",
                 _bar_chart(["untagged", "index children"], [report.untagged_manifests, report.index_children]),
                 _table(["what", "manifests", "bytes"],
                        [["untagged", report.untagged_manifests,
                          (report.untagged_bytes, human_bytes(report.untagged_bytes))],
                         ["index children", report.index_children, ""]])),
        _section("Largest images", "largest-images", f"The {len(report.largest_images)} largest tagged manifests.",
                 _bar_chart([image.example for image in report.largest_images],
                            [image.size for image in report.largest_images], horizontal=True, bytes_axis=True),
                 _table(["registry", "image", "digest", "tags", "size"],
                        [[i.registry, i.example, i.digest, i.tags, (i.size, human_bytes(i.size))]
                         for i in report.largest_images])),
    ]
    if report.growth:
        sections.append(_section("Growth over time", "growth", "Tags alive each day, from the tag history.",
                                 _line_chart(report.growth),
                                 _table(["day", "tags"], [list(point) for point in report.growth[-10:]])))
    summary = (f"{report.repos:,} repositories, {report.tags:,} tags, {esc(human_bytes(report.total_bytes))} in "
               f"repositories ({esc(human_bytes(report.unique_bytes))} held by one repository alone); "
               f"{esc(', '.join(report.registries) or 'no registry')}.")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p class=summary id=summary>{summary} Generated {esc(report.generated_at)} UTC.</p>
{''.join(sections)}
</body>
</html>
"""


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 1rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
section { break-inside: avoid; } .chart svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 0.85rem; margin-top: 0.5rem; }
td, th { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: left; }
td[data-value] { text-align: right; font-variant-numeric: tabular-nums; }
td.digest { font-family: monospace; font-size: 0.75rem; word-break: break-all; }
.empty { color: #666; font-style: italic; }
@media print { body { max-width: none; margin: 0; } h2 { margin-top: 1rem; } }
"""


def _section(title: str, ident: str, intro: str, chart: str, table: str) -> str:
    return (f'<section id="{ident}"><h2>{html.escape(title)}</h2><p>{html.escape(intro)}</p>'
            f'<div class=chart>{chart}</div>{table}</section>\n')


def _table(headers: list[str], body: list[list]) -> str:
    out = ["<table><thead><tr>", *(f"<th>{html.escape(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    for row in body:
        out.append("<tr>")
        for cell in row:
            if isinstance(cell, tuple):  # (exact number, shown text): the exact number stays readable by tools
                out.append(f'<td data-value="{cell[0]}">{html.escape(cell[1])}</td>')
            elif isinstance(cell, int):
                out.append(f'<td data-value="{cell}">{cell:,}</td>')
            else:
                css = ' class=digest' if str(cell).startswith("sha256:") else ""
                out.append(f"<td{css}>{html.escape(str(cell))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _figure(height: float):
    import matplotlib

    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, selectable, printable
    matplotlib.rcParams["svg.hashsalt"] = "regdb"  # the same report gives the same bytes
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    figure = Figure(figsize=(8, height), layout="constrained")
    return figure, figure.subplots()


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]


def _bytes_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _pos: human_bytes(int(value)))


def _count_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _pos: f"{int(value):,}" if value == int(value) else "")


def _repo_chart(repos: list[RepoSpace]) -> str:
    if not repos:
        return "<p class=empty>No repositories.</p>"
    figure, axes = _figure(max(2.0, 0.3 * len(repos) + 1))
    names = [r.repo for r in repos][::-1]
    alone = [r.unique_bytes for r in repos][::-1]
    shared = [r.shared_bytes for r in repos][::-1]
    axes.barh(names, alone, color="#1f77b4", label="held alone")
    axes.barh(names, shared, left=alone, color="#aec7e8", label="shared with other repositories")
    axes.xaxis.set_major_formatter(_bytes_formatter())
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, frameon=False)
    return _svg(figure)


def _bar_chart(labels: list[str], values: list[int], *, horizontal: bool = False, bytes_axis: bool = False) -> str:
    if not labels:
        return "<p class=empty>Nothing to show.</p>"
    figure, axes = _figure(max(2.0, 0.3 * len(labels) + 1) if horizontal else 3.0)
    if horizontal:
        axes.barh(labels[::-1], values[::-1], color="#1f77b4")
        axis = axes.xaxis
    else:
        axes.bar(labels, values, color="#1f77b4")
        axis = axes.yaxis
    axis.set_major_formatter(_bytes_formatter() if bytes_axis else _count_formatter())
    if not horizontal and len(labels) > 4:
        axes.tick_params(axis="x", labelrotation=20)
    return _svg(figure)


def _line_chart(points: list[tuple[str, int]]) -> str:
    figure, axes = _figure(3.0)
    axes.plot([datetime.strptime(day, "%Y-%m-%d") for day, _ in points], [count for _, count in points],
              color="#1f77b4")
    axes.set_ylabel("tags")
    figure.autofmt_xdate()
    return _svg(figure)
