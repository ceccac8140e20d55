"""Text that comes from outside, made safe to show: the one helper every layer uses (it imports nothing)."""

from __future__ import annotations

import re

# A registry names its repositories and tags; an ANSI escape in one (a clear-screen, an OSC title) or a newline
# (one name printed as two lines) must never reach a terminal raw. Text and table output, messages and log
# lines show them escaped (\x1b, \n); JSON escapes them as \u001b (so the value stays exact); CSV and TSV
# keep the exact value, quoted where a newline or separator needs it.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character written as a visible escape (``\x1b``, ``\n``); with
    ``keep_newlines``, regdb's own line breaks stay (a multi-line report or a logged SQL statement)."""
    if not _CONTROLS.search(text):
        return text
    if keep_newlines:
        return "\n".join(_CONTROLS.sub(_escape, line) for line in text.split("\n"))
    return _CONTROLS.sub(_escape, text)
