"""structlog set-up: key=value on a terminal, JSON lines otherwise (PS: one bound logger per association)."""

from __future__ import annotations

import io
import logging
import os
import sys

import structlog


def configure(*, level: str = "info", fmt: str = "auto", stream=None) -> None:
    """Configure structlog once for the process. fmt: 'text', 'json' or 'auto' (text on a TTY)."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    renderer = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if fmt == "text"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=lambda *args: LineLogger(stream),
        cache_logger_on_first_use=True,
    )


class LineLogger:
    """Writes each event as one write(2) of the whole line: the worker processes of `serve --workers` and
    `route` share their parent's stderr, and a line written in two pieces (print writes the text, then the
    newline) can be cut in half by another process's line."""

    def __init__(self, stream) -> None:
        self._stream = stream
        try:
            self._fd = stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):  # e.g. a StringIO in tests
            self._fd = -1

    def msg(self, message: str) -> None:
        line = message + "\n"
        if self._fd < 0:
            self._stream.write(line)
            self._stream.flush()
            return
        self._stream.flush()  # anything printed to it the ordinary way goes first
        data = line.encode("utf-8", "backslashreplace")
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    log = debug = info = warning = warn = error = critical = exception = fatal = failure = err = msg


def get_logger(**bind):
    return structlog.get_logger("aiodicom").bind(**bind)
