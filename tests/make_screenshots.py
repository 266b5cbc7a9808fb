"""Regenerate the README's screenshots with the browser tests' Chromium set-up.

    .venv/bin/python -m tests.make_screenshots --out docs      # or: make screenshots

Starts the real service (`python -m service`, the shipped shapes model, free ports), opens
the demo page in headless Chromium, uploads a generated shapes scene and saves
`demo_page.png`; asks the API for the annotated image of the same scene
(`render=true`, `Accept: image/png`) and saves `annotated_response.png`; runs
`scripts/evaluate.py --quick` (the shipped model on 12 generated scenes) and saves a
screenshot of its `index.html` as `evaluation_report.png`. Everything is generated here;
nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

import ssd_core
from ssd_core.data.shapes import render_scene
from tests.browser import REPO, launch_chromium

SHAPES_MODEL = Path(ssd_core.__file__).parent / "assets" / "ssd7_shapes.keras"
SCENE_SEED, SCENE_SIZE = 12, (288, 480)  # (height, width); seed 12: five shapes, all found
READY_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_service(http_port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SSD_MODEL_PATH": str(SHAPES_MODEL),
        "SSD_HOST": "127.0.0.1",
        "SSD_HTTP_PORT": str(http_port),
        "SSD_GRPC_PORT": str(free_port()),
        "SSD_MAX_BATCH_SIZE": "2",
    }
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise RuntimeError(f"the service was not ready within {READY_TIMEOUT_S} s")


def scene_jpeg(folder: Path) -> Path:
    rng = np.random.default_rng(SCENE_SEED)
    scene = render_scene(rng, *SCENE_SIZE, max_objects=6, empty_probability=0.0)
    path = folder / "shapes_scene.jpg"
    Image.fromarray(scene.image).save(path, quality=92)
    return path


def shoot_demo_page(url: str, image: Path, out: Path) -> None:
    with launch_chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 820})
        page.goto(f"{url}/")
        page.wait_for_selector("body[data-state=idle]", timeout=30_000)
        page.set_input_files("#file", str(image))
        page.wait_for_selector("body[data-state=done]", timeout=30_000)
        page.screenshot(path=out / "demo_page.png", full_page=True)


def save_annotated(url: str, image: Path, out: Path) -> None:
    response = httpx.post(
        f"{url}/detect", params={"render": "true"}, headers={"accept": "image/png"},
        files={"image": (image.name, image.read_bytes(), "image/jpeg")}, timeout=30,
    )  # fmt: skip
    response.raise_for_status()
    (out / "annotated_response.png").write_bytes(response.content)


def shoot_evaluation_report(folder: Path, out: Path) -> None:
    report = folder / "eval"
    subprocess.run(
        [sys.executable, "scripts/evaluate.py", "--quick", "--out", str(report), "--gallery", "4",
         "--no-progress"],
        cwd=REPO, check=True,
    )  # fmt: skip
    with launch_chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto((report / "index.html").as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=out / "evaluation_report.png", full_page=True)


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        image = scene_jpeg(Path(tmp))
        service = start_service(port)
        try:
            url = f"http://127.0.0.1:{port}"
            shoot_demo_page(url, image, out)
            save_annotated(url, image, out)
        finally:
            service.terminate()
            service.wait(timeout=60)
        shoot_evaluation_report(Path(tmp), out)
    print(f"wrote demo_page.png, annotated_response.png, evaluation_report.png to {out}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs", help="folder for the PNG files")
    sys.exit(main(parser.parse_args()))
