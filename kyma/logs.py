"""Logging set-up: plain text by default, or one JSON object per line (KYMA_LOG_FORMAT=json).

In JSON mode every finished API request also gets its own line on the `kyma.requests` logger, with
the fields an operator searches by; credentials never reach a log line (records carry ids only).
"""

from __future__ import annotations

import json
import logging
import sys
import time

REQUESTS = logging.getLogger("kyma.requests")
_json_lines = False


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object: time, level, logger, message, any `fields` it carries, the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str, fmt: str) -> None:
    """Set the root logger's level and format; JSON lines go to stdout, text to stderr as before."""
    global _json_lines
    if fmt not in ("text", "json"):
        raise ValueError("KYMA_LOG_FORMAT must be text or json")
    _json_lines = fmt == "json"
    if not _json_lines:
        logging.basicConfig(level=level)
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def request_lines() -> bool:
    """Whether finished requests get a line of their own (JSON mode; text mode keeps the database's log only)."""
    return _json_lines


def request_line(fields: dict) -> None:
    """One line for a finished request."""
    REQUESTS.info("request", extra={"fields": fields})
