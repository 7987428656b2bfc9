"""Logging set-up: every line carries episode, market and stage.

The context lives in ``contextvars`` (per thread/task, not global mutable state); a filter
copies it onto each record. ``--log-format json`` gives one JSON object per line for farm
log collectors; the default is a compact human format.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

#: the default is an empty read-only mapping: ``log_context`` always sets a fresh dict, never mutates it
_CONTEXT: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "locpipe_log_context", default=MappingProxyType({})
)
FIELDS = ("episode", "market", "stage")


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _CONTEXT.get()
        for name in FIELDS:
            if not getattr(record, name, None):
                setattr(record, name, ctx.get(name, ""))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        obj.update({k: getattr(record, k, "") for k in FIELDS})
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        where = "/".join(getattr(record, k, "") for k in FIELDS if getattr(record, k, ""))
        prefix = f"{record.levelname.lower():7s} {where + ': ' if where else ''}"
        return prefix + record.getMessage()


def setup_logging(level: str = "INFO", fmt: str = "text", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("faster_whisper", "httpx", "urllib3", "piper"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
