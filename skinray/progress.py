"""Progress on the terminal: one line rewritten in place (a bar) when the stream is a terminal,
else plain lines at most every ``every_s`` seconds and at the end (logs, pipes, CI)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "." * (width - filled) + "]"


class ProgressLine:
    """``update(text)`` shows ``text`` as the current progress. On a terminal the line is
    rewritten (at most 5 times a second) and ended by the final update; elsewhere a line is
    printed at most every ``every_s`` seconds, and always for the final update."""

    def __init__(self, every_s: float = 10.0, stream: TextIO | None = None, live: bool | None = None):
        self._stream = stream
        if live is None:
            isatty = getattr(self.stream, "isatty", None)
            live = bool(isatty and isatty())
        self.live = live
        self.every_s = 0.2 if live else every_s
        self.last = float("-inf") if live else time.monotonic()  # plain lines: the first after every_s
        self.shown = 0  # characters of the live line on screen

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr  # looked up at each write: the CLI may move stderr

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every_s

    def update(self, text: str, final: bool = False) -> None:
        if not final and not self.due():
            return
        self.last = time.monotonic()
        if self.live:
            self.stream.write("\r" + text + " " * max(0, self.shown - len(text)) + ("\n" if final else ""))
            self.shown = 0 if final else len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
