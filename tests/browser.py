"""Headless Chromium for the browser tests: Debian's `chromium` driven by Playwright.

Playwright's own browser download cannot work offline, so the tests launch the system
Chromium through `executable_path`. `.ci/run` installs it (apt-get); in CI (`CI` set) a
missing browser fails the test, on a developer machine without one the test is skipped with
the command to install it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# Screenshots and other files a person looks at after a run (gitignored).
ARTIFACTS = Path(os.environ.get("SSD_TEST_ARTIFACTS", REPO / "test-artifacts"))
# Without the networking switches Chromium keeps calling home, which this network refuses.
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


def chromium_path() -> str:
    """The Chromium binary: $SSD_CHROMIUM, else `chromium` on the PATH; fails or skips if absent."""
    path = os.environ.get("SSD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if Path(path).is_file():
        return path
    message = f"no Chromium at {path}: `apt-get install chromium` (or set SSD_CHROMIUM)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def launch_chromium() -> Iterator[Any]:
    """A Playwright `Browser` on the system Chromium, closed on exit."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def launch_another(browser: Any, extra_args: tuple[str, ...]) -> Iterator[Any]:
    """A second Chromium with more switches (e.g. a fake webcam), from the Playwright
    instance that runs `browser` (only one sync Playwright may run per thread)."""
    other = browser.browser_type.launch(
        executable_path=chromium_path(), args=[*CHROMIUM_ARGS, *extra_args], headless=True
    )
    try:
        yield other
    finally:
        other.close()


def watch_console(page: Any) -> list[str]:
    """Collect the page's console errors and uncaught exceptions into the returned list."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    return errors
