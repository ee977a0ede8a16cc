"""Reading an HTTP response under a minimum-rate deadline: no server can hold a client forever.

Per-read timeouts are no deadline: a server that trickles a byte now and then never trips them. Every
RATE_WINDOW seconds at least MIN_RATE bytes a second must have arrived (headers included), or the
transfer stops. The response is read by a worker thread, so the caller never waits longer than
POLL_SECONDS without getting control back (to report progress, honour an interrupt, check the rate).
Used by the weight download and by the client of a ComfyUI server (``runner/server.py``).
"""
from __future__ import annotations

import queue
import threading
import time
import urllib.error
import urllib.request
from typing import Iterator

MIN_RATE = 16 << 10
RATE_WINDOW = 30.0
# How often the caller gets control back while bytes are awaited.
POLL_SECONDS = 0.25
CHUNK = 256 << 10


class TooSlow(OSError):
    """The server sent less than MIN_RATE bytes a second over a RATE_WINDOW."""


class RateWatch:
    """The transfer's clock: ``received`` after each block, ``idle`` when none came within POLL_SECONDS;
    both raise (``too_slow``) when the rate over the last window is below MIN_RATE."""

    def __init__(self, what: str = "the server") -> None:
        self.what = what
        self.done = 0
        self.window_start, self.window_done = time.monotonic(), 0

    def start(self, done: int) -> None:
        self.done = self.window_done = done

    def received(self, done: int) -> None:
        self.done = done
        self.check()

    def idle(self) -> None:
        self.check()

    def check(self) -> None:
        now = time.monotonic()
        elapsed = now - self.window_start
        if elapsed < RATE_WINDOW:
            return
        rate = (self.done - self.window_done) / elapsed
        if rate < MIN_RATE:
            raise self.too_slow(rate, elapsed)
        self.window_start, self.window_done = now, self.done

    def too_slow(self, rate: float, elapsed: float) -> Exception:
        return TooSlow(f"{self.what} sent {rate / 1024:.1f} KiB/s over the last {elapsed:.0f} s, below the "
                       f"minimum of {MIN_RATE / 1024:.0f} KiB/s; stopped")


class Stream:
    """An HTTP request read by a worker thread (see the module docstring). An abandoned transfer's worker
    closes the response itself when its read returns (at the latest at the socket timeout): closing it
    from here would wait for that read. With ``errors_as_responses`` an HTTP error status is a response
    whose body can be read like any other (bounded and deadlined too); otherwise it is raised."""

    def __init__(self, request: urllib.request.Request, timeout: float, errors_as_responses: bool = False) -> None:
        self.items: queue.Queue = queue.Queue(maxsize=8)
        self.closed = threading.Event()
        self.errors_as_responses = errors_as_responses
        threading.Thread(target=self._run, args=(request, timeout), daemon=True, name="adain-http").start()

    def _put(self, item) -> bool:
        while not self.closed.is_set():
            try:
                self.items.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, request, timeout) -> None:
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if not self.errors_as_responses:
                self._put(("error", exc))
                return
            response = exc
        except BaseException as exc:  # handed to the caller, which decides
            self._put(("error", exc))
            return
        if not self._put(("response", response)):
            response.close()
            return
        try:
            with response:
                while not self.closed.is_set():
                    block = response.read1(CHUNK)
                    if not self._put(("block", block) if block else ("end", None)) or not block:
                        return
        except BaseException as exc:
            self._put(("error", exc))

    def _next(self, watch: RateWatch):
        while True:
            try:
                kind, value = self.items.get(timeout=POLL_SECONDS)
            except queue.Empty:
                watch.idle()
                continue
            if kind == "error":
                raise value
            return kind, value

    def response(self, watch: RateWatch):
        return self._next(watch)[1]

    def blocks(self, watch: RateWatch) -> Iterator[bytes]:
        while True:
            kind, block = self._next(watch)
            if kind == "end":
                return
            yield block

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc_info) -> None:
        self.closed.set()
