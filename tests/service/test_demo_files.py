"""The demo page's files: served from the package, self-contained (no network access needed)."""

from __future__ import annotations

import re

import httpx

from service.demo_page import STATIC_DIR


def test_root_serves_the_demo_page_and_its_assets(service):
    page = httpx.get(f"{service.http_url}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert sorted(assets) == ["/static/demo.css", "/static/demo.js"]
    for asset, media_type in zip(sorted(assets), ("text/css", "text/javascript"), strict=True):
        response = httpx.get(f"{service.http_url}{asset}", timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media_type)


def test_demo_files_load_nothing_from_other_hosts():
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name
        assert "@import" not in text and "url(" not in text, path.name


def test_unknown_static_file_is_a_json_404(service):
    response = httpx.get(f"{service.http_url}/static/nope.js", timeout=10)
    assert response.status_code == 404 and response.json() == {"detail": "Not Found"}


def test_demo_page_is_not_part_of_the_api_schema(service):
    paths = httpx.get(f"{service.http_url}/openapi.json", timeout=10).json()["paths"]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)
