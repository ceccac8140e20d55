"""One renderer for every listing regdb prints: query results, tag lists, ``regdb sql``, removal plans.

Formats:

* ``text``: docker-registry-util's style, no header; one line per row, columns separated by two spaces and
  every column but the last padded to its widest value (``repo  digest``).
* ``table``: the same alignment, with a header line and a rule under it.
* ``json``: an array of objects, one per line (so a large listing streams); ``ndjson``: one object per line.
  A command's result (a plan, a removal, a sync, a report) is ``document``: one JSON document in the same
  layout, each top-level member or item on a line of its own (README "Output formats").
* ``csv`` / ``tsv``: a header row, then the rows (RFC 4180 quoting; tab-separated for ``tsv``).

Rows are mappings (by column name), sequences (positional: tuples, SQLAlchemy rows) or objects with the
columns as attributes (dataclasses such as ``Selected``). Values: None is empty text or JSON null; lists are
JSON arrays, or comma-joined in text; datetimes are ISO 8601, a naive one taken as UTC (the inventory stores
UTC) and marked ``Z``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from regdb.text import escape_controls

FORMATS = ("text", "table", "json", "ndjson", "csv", "tsv")

# Lines are written in batches: one write per row costs more than the formatting on million-row listings.
_BATCH = 2000


def render(
    rows: Iterable[Any],
    columns: Sequence[str],
    fmt: str = "text",
    *,
    text_columns: Sequence[str] | None = None,
) -> Iterator[str]:
    """Yield the listing as chunks of text, each ending with a newline.

    ``text_columns`` picks the columns the ``text`` format shows (docker-registry-util printed only
    ``repo  digest`` for a query; the other formats carry every column).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")
    columns = list(columns)
    records = (_record(row, columns) for row in rows)
    if fmt == "text":
        shown = list(text_columns) if text_columns else columns
        picks = [columns.index(name) for name in shown]
        return _aligned(([record[i] for i in picks] for record in records), header=None)
    if fmt == "table":
        return _aligned(records, header=columns)
    if fmt == "json":
        return _json_array(records, columns)
    if fmt == "ndjson":
        return _batched(_json_object(columns, record) + "\n" for record in records)
    return _delimited(records, columns, "\t" if fmt == "tsv" else ",")


def write(stream, rows: Iterable[Any], columns: Sequence[str], fmt: str = "text", **options) -> None:
    """Render into a text stream (``sys.stdout``, a file, ``io.StringIO``)."""
    for chunk in render(rows, columns, fmt, **options):
        stream.write(chunk)


def to_string(rows: Iterable[Any], columns: Sequence[str], fmt: str = "text", **options) -> str:
    return "".join(render(rows, columns, fmt, **options))


# --- control characters ---------------------------------------------------------------------------------------
# --- rows and values -------------------------------------------------------------------------------------------


def _record(row: Any, columns: list[str]) -> list[Any]:
    if isinstance(row, Mapping):
        return [row.get(name) for name in columns]
    if isinstance(row, Sequence) and not isinstance(row, (str, bytes)):
        if len(row) != len(columns):
            raise ValueError(f"row has {len(row)} values for {len(columns)} columns: {row!r}")
        return list(row)
    if dataclasses.is_dataclass(row) or (columns and hasattr(row, columns[0])):
        return [getattr(row, name) for name in columns]
    raise TypeError(f"cannot render a row of type {type(row).__name__}")


def _iso(value: date) -> str:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.isoformat() + "Z"
    return value.isoformat()


# The text SQLAlchemy stores a DateTime as on SQLite (regdb.inventory.rawsql shows PostgreSQL's the same way),
# which raw SQL hands back as a string; the inventory keeps UTC. Nothing else regdb prints has this shape (a space
# and colons occur in no repository, tag or digest).
_STORED_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?")


def iso_timestamp(value: Any) -> Any:
    """A timestamp as the inventory stores it (``2026-12-01 12:00:00.123456``) in ISO 8601 UTC
    (``2026-12-01T12:00:00.123456Z``); any other value unchanged."""
    if isinstance(value, str) and len(value) >= 19 and value[10] == " " and _STORED_TIMESTAMP.fullmatch(value):
        return value.replace(" ", "T", 1) + "Z"
    return value


def with_iso_timestamps(rows: Iterable[Sequence[Any]]) -> Iterator[list[Any]]:
    """``regdb sql`` rows with the stored timestamps among their values in ISO 8601 UTC."""
    for row in rows:
        yield [iso_timestamp(value) for value in row]


def document(value: Any) -> str:
    """One JSON document for a command's result, ending with a newline, in the layout of a ``json`` listing:
    a list one item a line, an object one member a line, each compact; timestamps ISO 8601 UTC with ``Z``."""
    def compact(item: Any) -> str:
        text = json.dumps(_timestamps_in(item), ensure_ascii=False, default=_json_default)
        return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)

    if isinstance(value, Mapping) and value:
        return "{\n  " + ",\n  ".join(f"{compact(str(k))}: {compact(v)}" for k, v in value.items()) + "\n}\n"
    if isinstance(value, (list, tuple)) and value:
        return "[\n  " + ",\n  ".join(compact(item) for item in value) + "\n]\n"
    return compact(value) + "\n"


def _timestamps_in(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _timestamps_in(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_timestamps_in(item) for item in value]
    return iso_timestamp(value)


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 repository``, ``2 repositories``, ``0 tags``: the count and the noun that goes with it."""
    if count == 1:
        return f"{count} {singular}"
    if plural_form is None:
        plural_form = singular[:-1] + "ies" if singular.endswith("y") and singular[-2:-1] not in "aeiou" \
            else singular + "s"
    return f"{count} {plural_form}"


def _text(value: Any) -> str:
    """A value as one field of text, csv or tsv output."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return _iso(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(_text(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, date):
        return _iso(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029]")  # json.dumps escapes \x00-\x1f itself, not these


def _json_object(columns: list[str], record: list[Any]) -> str:
    text = json.dumps(dict(zip(columns, record, strict=True)), ensure_ascii=False, default=_json_default)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) if _JSON_UNSAFE.search(text) else text


# --- formats ---------------------------------------------------------------------------------------------------


def _batched(lines: Iterable[str]) -> Iterator[str]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= _BATCH:
            yield "".join(batch)
            batch.clear()
    if batch:
        yield "".join(batch)


def _aligned(records: Iterable[list[Any]], header: list[str] | None) -> Iterator[str]:
    # Alignment needs the widest value of each column, so these two formats hold the rows; the others stream.
    records = list(records)
    cells = [[escape_controls(_text(value)) for value in record] for record in records]
    if header is None:
        numeric = [False] * (len(cells[0]) if cells else 0)
    else:
        # In a table, a column of numbers (by type, so tag "1.0" stays text) reads better right-aligned.
        numeric = [
            any(record[i] is not None for record in records)
            and all(_is_number(record[i]) for record in records if record[i] is not None)
            for i in range(len(header))
        ]
        cells = [header, ["-" * len(name) for name in header], *cells]
    if not cells:
        return iter(())
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    last = len(widths) - 1

    def line(row: list[str]) -> str:
        parts = []
        for i, value in enumerate(row):
            if numeric[i]:
                parts.append(value.rjust(widths[i]))
            elif i < last:
                parts.append(value.ljust(widths[i]))
            else:
                parts.append(value)
        return "  ".join(parts).rstrip() + "\n"

    return _batched(line(row) for row in cells)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _json_array(records: Iterable[list[Any]], columns: list[str]) -> Iterator[str]:
    def lines() -> Iterator[str]:
        first = True
        for record in records:
            yield ("[\n  " if first else ",\n  ") + _json_object(columns, record)
            first = False
        yield "[]\n" if first else "\n]\n"

    return _batched(lines())


def _delimited(records: Iterable[list[Any]], columns: list[str], delimiter: str) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")

    def lines() -> Iterator[str]:
        writer.writerow(columns)
        for record in records:
            writer.writerow([_text(value) for value in record])
            if buffer.tell() > 64_000:
                yield _drain(buffer)
        yield _drain(buffer)

    return (chunk for chunk in lines() if chunk)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


__all__ = ["FORMATS", "document", "escape_controls", "iso_timestamp", "plural", "render", "to_string",
           "with_iso_timestamps", "write"]
