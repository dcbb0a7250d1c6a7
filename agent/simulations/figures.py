"""Shared figure helpers: a headless matplotlib and a uniform save."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # eval runs on machines without a display
import matplotlib.pyplot as plt  # noqa: E402


def new_figure(columns: int, width_per_column: float = 4.0, height: float = 3.6):
    fig, axes = plt.subplots(1, columns, figsize=(width_per_column * columns, height), squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def p_value_label(p: float) -> str:
    return "p < 1e-4" if p < 1e-4 else f"p = {p:.2g}"
