"""Matplotlib figures shared by the notebooks (sampling grids, bilinear weights, feature maps)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch


def _np(a):
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def plot_sampling_positions(ax, image, regular, deformed=None, title=None, zoom=None):
    """Draw a kernel's sampling positions on an image (Fig. 2a of the paper).

    image: (H, W) or (H, W, 3); regular: (N, 2) positions p + p_k as (y, x);
    deformed: (N, 2) positions p + p_k + dp_k, drawn with arrows from the regular ones.
    zoom: (y0, y1, x0, x1) to crop the view.
    """
    image, regular = _np(image), _np(regular)
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
    ax.scatter(regular[:, 1], regular[:, 0], s=40, c="tab:blue", label="regular grid $p + p_k$",
               edgecolors="white", linewidths=0.8, zorder=3)
    if deformed is not None:
        deformed = _np(deformed)
        ax.scatter(deformed[:, 1], deformed[:, 0], s=40, c="tab:red", zorder=4,
                   label=r"deformed $p + p_k + \Delta p_k$", edgecolors="white", linewidths=0.8)
        for (y0, x0), (y1, x1) in zip(regular, deformed):
            ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", color="yellow", lw=1))
    if zoom is not None:
        ax.set_ylim(zoom[1], zoom[0])
        ax.set_xlim(zoom[2], zoom[3])
    ax.legend(loc="lower left", fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_bilinear(ax, image, y, x, title=None):
    """Show the four neighbours of a real position (y, x) and their bilinear weights."""
    image = _np(image)
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    ly, lx = y - y0, x - x0
    ax.imshow(image, cmap="gray", interpolation="nearest")
    weights = {(0, 0): (1 - ly) * (1 - lx), (0, 1): (1 - ly) * lx, (1, 0): ly * (1 - lx), (1, 1): ly * lx}
    for (dy, dx), wgt in weights.items():
        ax.scatter(x0 + dx, y0 + dy, s=400 * wgt + 20, c="tab:orange", edgecolors="k", zorder=3)
        ax.text(x0 + dx + 0.12, y0 + dy - 0.12, f"{wgt:.2f}", color="k", fontsize=9,
                bbox=dict(facecolor="white", alpha=0.8, lw=0))
    ax.scatter(x, y, marker="x", s=80, c="tab:red", zorder=4)
    ax.set_title(title or f"sample at (y, x) = ({y:.2f}, {x:.2f})")
    return ax


def show_maps(maps, titles=None, ncols=5, cmap="viridis", size=2.2, suptitle=None, symmetric=False):
    """A grid of 2-D maps (feature channels, warps, offsets) with one shared colour scale."""
    maps = [_np(m) for m in maps]
    nrows = (len(maps) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    lo, hi = min(m.min() for m in maps), max(m.max() for m in maps)
    if symmetric:
        hi = max(abs(lo), abs(hi))
        lo = -hi
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(maps):
            ax.imshow(maps[i], cmap=cmap, vmin=lo, vmax=hi)
            if titles is not None:
                ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig
