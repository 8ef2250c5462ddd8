"""matplotlib without a display; one PNG per scenario next to its JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt


def figure(rows: int = 1, cols: int = 2, size: tuple[float, float] = (12, 4.5)) -> tuple[Any, Any]:
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    return fig, axes


def save(fig: Any, path: Path, title: str) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def cdf(ax: Any, values: list[float], label: str, **kwargs: Any) -> None:
    xs = sorted(values)
    if not xs:
        return
    ys = [(i + 1) / len(xs) for i in range(len(xs))]
    ax.step(xs, ys, where="post", label=label, **kwargs)
