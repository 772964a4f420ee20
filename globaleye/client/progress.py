"""The client's one progress line on stderr (the results go to stdout)."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """One line on stderr, rewritten at most 5 times a second."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.last = 0.0
        self.shown = False

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= 0.2:
            self.last = now
            self.stream.write("\r" + text[:120].ljust(60))
            self.stream.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
