"""Evaluation outputs: VOC server result files, precision-recall plots, a text AP table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssd_core.evaluation.voc_eval import VOCResult


def write_voc_result_files(
    detections: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    out_dir: str | Path,
    prefix: str = "comp4_det_test_",
) -> list[Path]:
    """Write one `comp4_det_test_<class>.txt` per class, the VOC evaluation server's format.

    Each line is `<image_id> <score> <xmin> <ymin> <xmax> <ymax>` (pixels). Every class gets a
    file, empty if it has no detections.

    Returns:
        The files written, in class order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines: dict[int, list[str]] = {label: [] for label in range(1, len(class_names) + 1)}
    for det in detections:
        label = int(det["label"])
        if label not in lines:
            raise ValueError(
                f"detection label {label} is outside 1..{len(class_names)} (class_names)"
            )
        box = " ".join(f"{float(v):.1f}" for v in det["box"])
        lines[label].append(f"{det['image_id']} {float(det['score']):.6f} {box}\n")
    paths = []
    for label, name in enumerate(class_names, start=1):
        path = out_dir / f"{prefix}{name}.txt"
        path.write_text("".join(lines[label]))
        paths.append(path)
    return paths


def ap_table(ap: Mapping[int, float], class_names: Sequence[str], mean: float) -> str:
    """A fixed-width per-class AP table with the mean as its last row."""
    width = max([len(n) for n in class_names] + [5])
    rows = [f"{'class':<{width}}  AP"]
    for label, value in ap.items():
        name = class_names[label - 1] if 0 < label <= len(class_names) else str(label)
        rows.append(f"{name:<{width}}  {'n/a' if math.isnan(value) else f'{value:.4f}'}")
    rows.append(f"{'mAP':<{width}}  {'n/a' if math.isnan(mean) else f'{mean:.4f}'}")
    return "\n".join(rows)


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def plot_pr_curves(
    result: VOCResult, class_names: Sequence[str], out_dir: str | Path
) -> list[Path]:
    """One `pr_<class>.png` per evaluated class plus `pr_summary.png` with every curve.

    Returns:
        The image files written (summary last).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    summary, summary_ax = plt.subplots(figsize=(7, 6))
    for label, ap in result.ap.items():
        name = class_names[label - 1] if 0 < label <= len(class_names) else str(label)
        recall = np.nan_to_num(result.recall[label])
        precision = result.precision[label]
        fig, ax = plt.subplots(figsize=(5, 4))
        for axis in (ax, summary_ax):
            axis.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
        _finish_axes(ax, f"{name}: AP {ap:.4f} ({result.metric})")
        path = out_dir / f"pr_{_safe_name(name)}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    _finish_axes(summary_ax, f"mAP {result.mAP:.4f} ({result.metric})")
    summary_ax.legend(fontsize="small", loc="lower left")
    path = out_dir / "pr_summary.png"
    summary.savefig(path, dpi=80)
    plt.close(summary)
    paths.append(path)
    return paths


def _finish_axes(ax: Any, title: str) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
