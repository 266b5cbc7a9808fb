"""Admission of HTTP requests before their body is read: a bound on requests and body bytes.

A request takes a `Ticket` before its first body byte is read and holds it until its answer
is sent, so the bound covers reading, the decode queue, the batch queue and compute. Bytes are
reserved up front from `Content-Length`; a chunked body reserves as it arrives. A request that
does not fit is refused at once (503 with Retry-After), without reading its body.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import OverloadedError


class InFlightBudget:
    """At most `max_requests` admitted requests holding at most `max_bytes` body bytes."""

    def __init__(self, max_requests: int, max_bytes: int) -> None:
        if max_requests < 1 or max_bytes < 1:
            raise ValueError(f"limits must be >= 1, got {max_requests} requests, {max_bytes} B")
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0

    @contextmanager
    def admit(self, declared_bytes: int = 0) -> Iterator[Ticket]:
        """Hold one request slot and `declared_bytes` for the duration of the `with` block.

        Raises:
            OverloadedError: no request slot, or the bytes do not fit now.
        """
        if self.requests >= self.max_requests:
            raise OverloadedError(f"too many requests in flight ({self.max_requests}); retry later")
        self._reserve(declared_bytes)
        self.requests += 1
        ticket = Ticket(self, declared_bytes)
        try:
            yield ticket
        finally:
            self.requests -= 1
            self.bytes -= ticket.bytes

    def _reserve(self, count: int) -> None:
        if self.bytes + count > self.max_bytes:
            raise OverloadedError(
                f"too many request bytes in flight (limit {self.max_bytes} bytes); retry later"
            )
        self.bytes += count


class Ticket:
    """One admitted request's share of an `InFlightBudget`."""

    def __init__(self, budget: InFlightBudget, reserved_bytes: int) -> None:
        self._budget = budget
        self.bytes = reserved_bytes

    def grow_to(self, total_bytes: int) -> None:
        """Make the reservation at least `total_bytes` (a chunked body that kept coming).

        Raises:
            OverloadedError: the extra bytes do not fit.
        """
        if total_bytes > self.bytes:
            self._budget._reserve(total_bytes - self.bytes)
            self.bytes = total_bytes
