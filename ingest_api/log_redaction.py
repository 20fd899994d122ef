"""Keys never reach the logs: `?key=` (EventSource and <img> cannot send headers,
so the dashboard and the stream take the key in the query) is redacted from the
access log's request line."""

from __future__ import annotations

import logging
import re

_KEY_IN_QUERY = re.compile(r"([?&](?:key|token)=)[^&\s]*", re.IGNORECASE)


def redact(text: str) -> str:
    return _KEY_IN_QUERY.sub(r"\1[redacted]", text)


class RedactKeys(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install() -> None:
    """On uvicorn's access logger (once, however many apps are made)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactKeys) for f in access.filters):
        access.addFilter(RedactKeys())
