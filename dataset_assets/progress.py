"""Progress lines for long work in the Dagster log: counts, rate and ETA, at most every few seconds."""

from __future__ import annotations

import time
from typing import Callable, Optional


class Progress:
    def __init__(self, log: Callable[[str], None], what: str, total: Optional[float] = None, every_s: float = 5.0):
        self.log, self.what, self.total, self.every_s = log, what, total, every_s
        self.start = self.last = time.monotonic()
        self.done = 0.0

    def update(self, done: float, extra: str = "") -> None:
        self.done = done
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.log(self.line(extra))

    def line(self, extra: str = "") -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        text = f"{self.what}: {self.done:,.0f}"
        if self.total:
            share = min(self.done / self.total, 1.0)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            text += f" of {self.total:,.0f} ({share:.0%}), ETA {eta:,.0f} s"
        text += f", {rate:,.2f}/s" if rate < 10 else f", {rate:,.0f}/s"
        return f"{text}{'; ' + extra if extra else ''}"
