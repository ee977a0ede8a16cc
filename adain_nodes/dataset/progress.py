"""Progress of a long run as log lines: done, rate and time left."""
from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

LOG_EVERY_S = 10.0


class Progress:
    """Logs ``what`` done out of ``total`` with the rate since the start and the time left, every
    ``LOG_EVERY_S`` seconds and at the end."""

    def __init__(self, total: int, what: str, label: str) -> None:
        self.total, self.what, self.label = total, what, label
        self.done = 0
        self.start = self.last = time.monotonic()

    def update(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.last >= LOG_EVERY_S or self.done >= self.total:
            self.last = now
            log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = "?" if left == float("inf") else f"{int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"
        return (f"{self.label}: {self.done}/{self.total} {self.what} ({100 * self.done / max(self.total, 1):.1f}%), "
                f"{rate:.2f} {self.what}/s, {eta} left")
