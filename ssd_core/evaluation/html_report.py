"""`index.html` of an evaluation folder: the per-class AP table, the PR curves and the gallery.

One self-contained static page (inline styles, relative image links, no scripts), so the
folder can be opened from disk, copied or served as it is.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ssd_core.evaluation.gallery import LEGEND, GalleryEntry

_STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d1d1f; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 0.2rem 0.8rem; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.mean td { font-weight: bold; }
.curves, .gallery { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; }
figure img { max-width: 640px; border: 1px solid #ddd; }
.gallery img { width: 480px; max-width: 100%; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.3em 0 1em;
          vertical-align: -0.1em; }
"""


def write_index_html(
    out_dir: str | Path,
    summary: Mapping[str, Any],
    ap: Mapping[str, float | None],
    num_gt: Mapping[str, int],
    curve_files: Sequence[str],
    gallery: Sequence[GalleryEntry],
    gallery_score_threshold: float,
) -> Path:
    """Write `out_dir/index.html` and return its path.

    Args:
        summary: shown as the header list: metric, mAP, dataset, split, model, image count...
        ap: class name -> AP (None or NaN: no ground truth); num_gt: class name -> objects.
        curve_files: PR plot files relative to `out_dir`, the summary plot first.
        gallery: the gallery images (relative paths), worst first.
        gallery_score_threshold: the score above which detections were drawn.
    """
    esc = html.escape
    facts = "".join(f"<li>{esc(str(k))}: {esc(_fmt(v))}</li>" for k, v in summary.items())
    rows = "".join(
        f"<tr><td>{esc(name)}</td><td>{_fmt(value)}</td><td>{num_gt.get(name, 0)}</td></tr>"
        for name, value in ap.items()
    )
    mean = summary.get("mAP")
    rows += f'<tr class="mean"><td>mAP</td><td>{_fmt(mean)}</td><td></td></tr>'
    curves = "".join(
        f'<figure><img src="{esc(f)}" alt="precision-recall curve {esc(f)}"></figure>'
        for f in curve_files
    )
    legend = "".join(
        f'<span class="swatch" style="background: rgb{colour}"></span>{esc(text)}'
        for text, colour in LEGEND
    )
    figures = "".join(
        f'<figure><img src="{esc(e.path)}" alt="{esc(e.image_id)}"><figcaption>'
        f"{esc(e.image_id)}: {e.num_false_positives} false positive(s), {e.num_misses} "
        f"miss(es), {e.num_true_positives} correct</figcaption></figure>"
        for e in gallery
    )
    if not gallery:
        figures = "<p>No image has a false positive or a miss at this threshold.</p>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Evaluation report</title>
<link rel="icon" href="data:,"><style>{_STYLE}</style></head>
<body>
<h1>Evaluation report</h1>
<ul>{facts}</ul>
<h2>Average precision per class</h2>
<table><thead><tr><th>class</th><th>AP</th><th>objects</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Precision-recall curves</h2>
<div class="curves">{curves}</div>
<h2>Gallery: the images with the most errors</h2>
<p>Detections with score &gt; {gallery_score_threshold:g}.{legend}</p>
<div class="gallery">{figures}</div>
</body></html>
"""
    path = Path(out_dir) / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
