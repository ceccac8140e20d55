"""Keep secrets out of logs.

``-l debug`` turns on urllib3's logger too, and a debug line can hold an ``Authorization`` header, a token
server's JSON answer, a refresh token in a form body or a ``user:password@`` URL. ``redact`` rewrites a line
so the value is gone but the line still says what happened; ``RedactingFilter`` applies it to every log
record (message, arguments, traceback), and ``install_redaction`` puts the filter where it takes effect.
"""

from __future__ import annotations

import logging
import re

from regdb.text import escape_controls

MASK = "***"

# Keys whose values are secrets, wherever they appear (JSON, Python reprs, query strings, form bodies).
_SECRET_KEYS = (
    r"token|access_token|refresh_token|id_token|identitytoken|identity_token|registrytoken|password|passwd"
    r"|secret|client_secret|auth"
)
_RULES: list[tuple[re.Pattern, str]] = [
    # Authorization / Proxy-Authorization headers, raw ("Authorization: Bearer x") or in a dict repr
    # ("'Authorization': 'Basic x'"): keep the scheme, drop everything up to the end of the value.
    (
        re.compile(r"""((?:proxy-)?authorization['"]?\s*[:=]\s*['"]?)([A-Za-z]+)[ \t]+[^'"\r\n]+""", re.I),
        rf"\1\2 {MASK}",
    ),
    # A bare credential after its scheme, anywhere else. Long enough not to eat a challenge's "realm=".
    (re.compile(r"\b(Bearer)\s+[A-Za-z0-9._~+/-]{16,}=*"), rf"\1 {MASK}"),
    (re.compile(r"\b(Basic)\s+(?!realm\b)[A-Za-z0-9+/]{8,}={0,2}"), rf"\1 {MASK}"),
    # "key": "value" in JSON and 'key': 'value' in Python reprs (only string values: {"auth": {...}} stays).
    (re.compile(rf"""(["'](?:{_SECRET_KEYS})["']\s*:\s*)(["'])(?:\\.|(?!\2).)*\2""", re.I), rf"\1\2{MASK}\2"),
    # key=value in query strings, form bodies and keyword reprs: ?access_token=x, &password=x, password='x'.
    (
        re.compile(rf"""((?:^|[?&;\s(,])(?:{_SECRET_KEYS})=)(?:'[^']*'|"[^"]*"|[^&\s#'",)]+)""", re.I),
        rf"\1{MASK}",
    ),
    # user:password@ in URLs.
    (re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*):[^/@\s]+@"), rf"\1:{MASK}@"),
    # A JWT on its own (a token in a log line without a key in front of it).
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MASK),
]


_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*):[^/@\s]+@")


def redact_urls(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` URL (a database URL) replaced by
    ``***``. Every RegdbError message goes through this."""
    return _URL_PASSWORD.sub(rf"\1:{MASK}@", text) if "@" in text else text


def redact(text: str) -> str:
    """``text`` with credentials, tokens and passwords replaced by ``***`` (keys and schemes kept)."""
    if not text:
        return text
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (with its arguments merged in), traceback text and stack text through
    ``redact``. It never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a mismatched format string: let logging report it the usual way
            return True
        # Control characters escaped (a registry's names must not drive the terminal); our own newlines kept.
        record.msg = escape_controls(redact(message), keep_newlines=True)
        record.args = None  # already merged: formatting again could only bring the secret back
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Redact everything ``logger`` (default: the root logger) emits. Call it after the handlers are set up.

    The filter goes on the logger's handlers, not only on the logger: a logger's own filters see only records
    logged on that very logger, while records from ``urllib3.connectionpool`` propagate up to the root's
    handlers, whose filters do see them. urllib3's and requests' loggers get it too, for handlers of their own
    (``urllib3.add_stderr_logger``).
    """
    logger = logger if logger is not None else logging.getLogger()
    existing = next((f for f in logger.filters if isinstance(f, RedactingFilter)), None)
    redacting = existing or RedactingFilter()
    for target in (logger, logging.getLogger("urllib3"), logging.getLogger("requests")):
        for filterer in (target, *target.handlers):
            if not any(isinstance(f, RedactingFilter) for f in filterer.filters):
                filterer.addFilter(redacting)
    return redacting
