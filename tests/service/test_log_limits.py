"""Bounded logging: repeats within an interval are dropped and counted; events summarised."""

from __future__ import annotations

import asyncio
import logging

import pytest

from service.log_limits import EventSummary, RepeatFilter, RepeatLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def captured():
    """A logger whose records land in a list, through a RepeatFilter on a fake clock."""
    clock = Clock()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    handler.addFilter(RepeatFilter(interval_s=1.0, clock=clock))
    logger = logging.getLogger("test_log_limits")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, records, clock
    logger.removeHandler(handler)


def test_repeated_error_is_logged_once_per_interval_with_the_dropped_count(captured):
    logger, records, clock = captured
    for fd in range(500):
        logger.error("socket.accept() out of system resource (fd %d)", fd)
    assert len(records) == 1
    clock.now += 1.0
    logger.error("socket.accept() out of system resource (fd %d)", 9999)
    assert len(records) == 2
    assert records[1].getMessage() == (
        "socket.accept() out of system resource (fd 9999)"
        " [499 more like this in the previous 1 s not logged]"
    )


def test_different_messages_and_info_records_are_not_limited(captured):
    logger, records, _ = captured
    for _ in range(3):
        logger.error("first problem")
        logger.error("second problem")
        logger.info("request served")
    assert [r.getMessage() for r in records] == [
        "first problem",
        "second problem",
        "request served",
        "request served",
        "request served",
    ]


def test_same_message_with_another_exception_type_is_a_different_repeat(captured):
    logger, records, _ = captured
    for error in (OSError("a"), OSError("b"), ValueError("c")):
        try:
            raise error
        except Exception:
            logger.exception("decode failed")
    assert [r.exc_info[0] for r in records] == [OSError, ValueError]


def test_repeat_limiter_keeps_one_traceback_per_interval():
    clock = Clock()
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("test_log_limits.limiter")
    logger.propagate = False
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    limiter = RepeatLimiter(logger, interval_s=1.0, clock=clock)
    try:
        for _ in range(50):
            try:
                raise KeyError("bug")
            except KeyError:
                limiter.exception("unexpected error answering an item")
        clock.now += 2.0
        limiter.warning("unexpected error answering an item")
    finally:
        logger.removeHandler(handler)
    assert len(records) == 2
    assert records[0].exc_info is not None
    assert "[49 more like this" not in records[0].getMessage()
    assert records[1].levelno == logging.WARNING  # another level: another key


def test_event_summary_logs_one_line_per_interval_with_counts(caplog):
    caplog.set_level(logging.INFO, logger="test_log_limits.summary")

    async def burst() -> EventSummary:
        summary = EventSummary(logging.getLogger("test_log_limits.summary"), "gone", 0.05)
        for _ in range(30):
            summary.record("http")
        for _ in range(4):
            summary.record("grpc")
        await asyncio.sleep(0.2)
        return summary

    summary = asyncio.run(burst())
    assert [r.getMessage() for r in caplog.records] == [
        "34 gone in the last 0.05 s (grpc: 4, http: 30)"
    ]
    assert summary.total == 34
