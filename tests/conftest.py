"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import launch_chromium


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium (Playwright `Browser`) per test module (module scope: Playwright's
    event loop must not outlive the module and meet other tests' asyncio loops)."""
    with launch_chromium() as browser:
        yield browser
