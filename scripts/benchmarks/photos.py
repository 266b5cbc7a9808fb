"""The benchmarks' client JPEGs: a real photo at any size, with a camera's noise.

scikit-image's astronaut when installed, else a generated shapes scene, resized to the size
asked for, with Gaussian noise (sigma 3) added, as a camera's sensor noise keeps a large photo's
entropy up, saved as a JPEG. (Uniform random pixels, which an earlier serve benchmark sent,
are the worst case of JPEG entropy decoding: twice a photo's decode time at 640 x 480.)
"""

from __future__ import annotations

import functools
import io

import cv2
import numpy as np
from PIL import Image


@functools.cache
def photo() -> tuple[str, np.ndarray]:
    """(what it is, (H, W, 3) uint8 RGB pixels) of the source photo."""
    try:
        from skimage import data

        return "scikit-image astronaut", np.asarray(data.astronaut())
    except ImportError:
        from ssd_core.data.shapes import render_scene

        scene = render_scene(np.random.default_rng(0), 512, 512, empty_probability=0.0)
        return "a generated shapes scene", scene.image


def photo_jpeg(height: int, width: int, quality: int = 90) -> bytes:
    """The photo at `height` x `width` pixels with sensor noise, as a JPEG of `quality`."""
    resized = cv2.resize(photo()[1], (width, height), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(height * width).normal(0.0, 3.0, resized.shape)
    pixels = np.clip(resized.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
