"""Bounded logging: a repeated message is logged at most once per interval, with a count.

A flood (aborted requests, exhausted file descriptors, a failing item on every stream) must
not turn into a log flood. Three tools, one rule:

- `RepeatFilter`, a `logging.Filter` for handlers: a WARNING-or-worse record whose logger,
  message template and exception type were already seen in the current interval is dropped;
  the next one let through says how many were dropped. Installed on the service's handlers,
  it covers asyncio's "socket.accept() out of system resource", uvicorn's and grpc's errors.
- `RepeatLimiter`, the same rule for the service's own call sites.
- `EventSummary`: events that are normal one by one but noisy in bulk (a client that went
  away) are counted and logged as one summary line per interval, never one line each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable

_MAX_KEYS = 1000  # distinct messages tracked at once; bounds the limiter's own memory


class _RepeatWindows:
    """Per key: the first occurrence in each interval passes, later ones are counted."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._windows: dict[Hashable, tuple[float, int]] = {}  # key -> (window end, dropped)

    def admit(self, key: Hashable) -> int | None:
        """None: drop this occurrence. Otherwise: let it through; how many were dropped before."""
        now = self._clock()
        end, dropped = self._windows.get(key, (float("-inf"), 0))
        if now < end:
            self._windows[key] = (end, dropped + 1)
            return None
        if len(self._windows) >= _MAX_KEYS:
            self._windows = {k: w for k, w in self._windows.items() if w[0] > now}
        self._windows[key] = (now + self.interval_s, 0)
        return dropped


def _dropped_note(dropped: int, interval_s: float) -> str:
    return f" [{dropped} more like this in the previous {interval_s:g} s not logged]"


class RepeatFilter(logging.Filter):
    """Drop WARNING+ records repeating (logger, template, exception type) within `interval_s`."""

    def __init__(
        self, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._windows = _RepeatWindows(interval_s, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        exc_type = record.exc_info[0] if record.exc_info else None
        dropped = self._windows.admit((record.name, str(record.msg), exc_type))
        if dropped is None:
            return False
        if dropped:
            note = _dropped_note(dropped, self._windows.interval_s).replace("%", "%%")
            record.msg = f"{record.msg}{note}"
        return True


def install_repeat_filter(interval_s: float = 1.0) -> RepeatFilter:
    """Add one `RepeatFilter` to every handler of the root logger and of uvicorn's loggers."""
    repeat_filter = RepeatFilter(interval_s)
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if repeat_filter not in handler.filters:
                handler.addFilter(repeat_filter)
    return repeat_filter


class RepeatLimiter:
    """Log through `logger`, each message template at most once per `interval_s`."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self._windows = _RepeatWindows(interval_s, clock)

    def log(self, level: int, msg: str, *args: object, exc_info: bool = False) -> None:
        dropped = self._windows.admit((level, msg))
        if dropped is None:
            return
        if dropped:
            msg = msg + _dropped_note(dropped, self._windows.interval_s).replace("%", "%%")
        self.logger.log(level, msg, *args, exc_info=exc_info)

    def warning(self, msg: str, *args: object) -> None:
        self.log(logging.WARNING, msg, *args)

    def exception(self, msg: str, *args: object) -> None:
        """ERROR with the current exception's traceback (at most one per interval)."""
        self.log(logging.ERROR, msg, *args, exc_info=True)


class EventSummary:
    """Count events by kind; log one INFO line per `interval_s` summarising the counts.

    `record` is cheap (a dict increment) and must be called on the event loop; the summary is
    written by a timer at most `interval_s` after the first event of an interval, so the last
    events of a burst are reported too.
    """

    def __init__(self, logger: logging.Logger, what: str, interval_s: float = 1.0) -> None:
        self.logger = logger
        self.what = what
        self.interval_s = interval_s
        self.total = 0
        self._counts: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None

    def record(self, kind: str) -> None:
        """Count one event of `kind` (e.g. the protocol); schedules the next summary."""
        self.total += 1
        self._counts[kind] = self._counts.get(kind, 0) + 1
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.interval_s, self.flush)

    def flush(self) -> None:
        """Log the counts gathered since the last summary (nothing if there are none)."""
        self._timer = None
        if not self._counts:
            return
        counts, self._counts = self._counts, {}
        detail = ", ".join(f"{kind}: {count}" for kind, count in sorted(counts.items()))
        self.logger.info(
            "%d %s in the last %g s (%s)", sum(counts.values()), self.what, self.interval_s, detail
        )
