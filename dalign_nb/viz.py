"""Matplotlib figures shared by the notebooks.

Sampling grids and bilinear weights (Eq. 1), grids of maps with a shared colour bar, a
difference map with its scale, a flow colour-wheel key, occlusion masks drawn over their
frame, and offsets beside a flow in the colour wheel (Fig. 1, 4, 11).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from .flow import flow_to_color


def _np(a):
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _pixel_axes(ax):
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")


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
    _pixel_axes(ax)
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
    _pixel_axes(ax)
    ax.set_title(title or f"sample at (y, x) = ({y:.2f}, {x:.2f})")
    return ax


def show_maps(maps, titles=None, ncols=5, cmap="viridis", size=2.2, suptitle=None, symmetric=False,
              colorbar=None):
    """A grid of 2-D maps (feature channels, warps, offsets) with one shared colour scale.

    colorbar: a label for a colour bar showing that shared scale (None: no colour bar).
    """
    maps = [_np(m) for m in maps]
    nrows = (len(maps) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + (0.8 if colorbar else 0), size * nrows),
                             squeeze=False, layout="constrained")
    lo, hi = min(m.min() for m in maps), max(m.max() for m in maps)
    if symmetric:
        hi = max(abs(lo), abs(hi))
        lo = -hi
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(maps):
            im = ax.imshow(maps[i], cmap=cmap, vmin=lo, vmax=hi)
            if titles is not None:
                ax.set_title(titles[i], fontsize=9)
    if colorbar:
        fig.colorbar(im, ax=axes, label=colorbar, shrink=0.8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def show_difference(a, b, titles=("a", "b"), cmap="gray", size=3.0, suptitle=None):
    """Two images and their difference ``a - b`` on a symmetric scale with a colour bar.

    a, b: (H, W). The colour bar of the third panel gives the size of the difference, so an
    exact agreement reads as a map whose scale is rounding error, not as two equal pictures.
    """
    a, b = _np(a), _np(b)
    diff = a - b
    scale = max(float(np.abs(diff).max()), np.finfo(np.float64).tiny)
    fig, axes = plt.subplots(1, 3, figsize=(3 * size + 1, size), layout="constrained")
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    for ax, img, title in zip(axes[:2], (a, b), titles):
        ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=10)
    im = axes[2].imshow(diff, cmap="RdBu_r", vmin=-scale, vmax=scale)
    axes[2].set_title(f"{titles[0]} − {titles[1]}", fontsize=10)
    fig.colorbar(im, ax=axes[2], format="%.0e", label="difference")
    for ax in axes:
        ax.set(xticks=[], yticks=[])
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def flow_key(ax, max_flow: float, size: int = 101, title="flow key"):
    """The colour wheel that ``flow.flow_to_color(..., max_flow)`` uses, as a labelled key.

    Each point (u, v) of the disc of radius ``max_flow`` is coloured as a flow of that value:
    the hue gives the direction, the saturation the length (white = no motion). v grows
    downwards, as y does in an image.
    """
    r = np.linspace(-max_flow, max_flow, size, dtype=np.float32)
    u, v = np.meshgrid(r, r, indexing="xy")  # (size, size): u along x, v along y (down)
    rgb = flow_to_color(np.stack([u, v], -1), max_flow=max_flow)  # (size, size, 3) uint8
    alpha = np.where(np.hypot(u, v) <= max_flow, 255, 0).astype(np.uint8)  # transparent outside the disc
    ax.imshow(np.dstack([rgb, alpha]), extent=(-max_flow, max_flow, max_flow, -max_flow))
    ax.xaxis.set_major_locator(MaxNLocator(5))  # ticks even where a figure switched them off
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel("u = dx (px)")
    ax.set_ylabel("v = dy (px)")
    ax.set_title(title, fontsize=9)
    return ax


def _mosaic(rows: int, columns: list[str]) -> list[list[str]]:
    """The reference frame spans the upper rows of the first column, the colour key the lower."""
    top = max(1, (rows + 1) // 2)
    total = top + max(1, rows - top)
    return [["reference" if i < top else "key"] + [f"{c}{i}" if i < rows else "." for c in columns]
            for i in range(total)]


def show_offsets_beside_flow(reference, neighbours, offsets: dict, flow, within: dict | None = None,
                             labels=None, *, threshold: float = 1.0, flow_name: str = "DIS flow",
                             max_flow: float | None = None, suptitle=None, size: float = 2.4):
    """Offsets in the flow colour wheel beside the flow, one row per neighbour (Fig. 1, 4, 11).

    reference (3, h, w): the reference frame, drawn once, the colour key under it;
    neighbours (R, 3, h, w); offsets {name: (R, 2, h_l, w_l)}: offset fields as flows (u, v)
    (``(dy, dx).flip``), in pixels of their level; flow (R, 2, h_l, w_l) from the reference to
    each neighbour; within {name: R shares}: the pixels within ``threshold`` px of the flow
    (Fig. 5), in the titles; labels: R names ("t-1"). One colour scale for every field
    (``max_flow``, default the 99th percentile of |flow|, at least 1 px; longer vectors saturate).
    """
    flow, rows = _np(flow), len(neighbours)
    labels = labels or [f"neighbour {i}" for i in range(rows)]
    norms = np.hypot(flow[:, 0], flow[:, 1])  # (R, h_l, w_l)
    max_flow = max_flow or max(float(np.quantile(norms, 0.99)), 1.0)
    last = len(offsets) + 1  # columns: the neighbour frame, each offset field, the flow
    fig, axes = plt.subplot_mosaic(_mosaic(rows, [f"c{j}_" for j in range(last + 1)]), layout="constrained",
                                   figsize=(size * (last + 2), size * max(rows, 2) * 0.8))
    axes["reference"].imshow(_np(reference).transpose(1, 2, 0).clip(0, 1))
    axes["reference"].set_title("reference frame t", fontsize=9)
    for i, label in enumerate(labels):
        axes[f"c0_{i}"].imshow(_np(neighbours[i]).transpose(1, 2, 0).clip(0, 1))
        axes[f"c0_{i}"].set_title(f"frame {label}", fontsize=9)
        for j, (name, field) in enumerate(offsets.items(), start=1):
            axes[f"c{j}_{i}"].imshow(flow_to_color(_np(field[i]).transpose(1, 2, 0), max_flow))
            share = "" if within is None else f"\n{100 * within[name][i]:.0f} % within {threshold:g} px"
            axes[f"c{j}_{i}"].set_title(f"{name}, {label}{share}", fontsize=9)
        axes[f"c{last}_{i}"].imshow(flow_to_color(flow[i].transpose(1, 2, 0), max_flow))
        axes[f"c{last}_{i}"].set_title(f"{flow_name} t → {label}\nmean |flow| {norms[i].mean():.2f} px",
                                       fontsize=9)
    for name, ax in axes.items():
        if name != "key":
            ax.set_axis_off()
    flow_key(axes["key"], max_flow, title=f"colour key (saturates at {max_flow:.1f} px)")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def show_occlusion(ax, frame, occluded, colour=(1.0, 0.1, 0.1), title=None):
    """An occlusion mask drawn in colour over its (dimmed) frame, so that no mask is white on white.

    frame: (H, W, 3) in [0, 1] or uint8; occluded: (H, W) bool, True where the content of
    the centre frame is not visible.
    """
    frame, occluded = _np(frame), _np(occluded).astype(bool)
    frame = frame / 255 if frame.dtype == np.uint8 else frame
    img = 0.35 + 0.4 * frame  # dimmed, never white
    img[occluded] = colour
    ax.imshow(img)
    ax.set(xticks=[], yticks=[])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def most_different_crop(a, b, size: int, stride: int = 16) -> tuple[int, int]:
    """The top-left corner ``(y0, x0)`` of the ``size`` x ``size`` window (on a ``stride`` grid)
    where two images ``(C, H, W)`` differ most in mean absolute difference: where SR crops of
    two models are worth looking at (Fig. 8, 15)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"expected two (C, H, W) images of one shape, "
                         f"got {tuple(a.shape)}, {tuple(b.shape)}")
    if size > min(a.shape[-2:]):
        raise ValueError(f"crop size {size} exceeds the image {tuple(a.shape[-2:])}")
    diff = (a.float() - b.float()).abs().mean(0)[None, None]  # (1, 1, H, W)
    score = torch.nn.functional.avg_pool2d(diff, size, stride=stride)[0, 0]  # (windows_y, windows_x)
    iy, ix = divmod(int(score.argmax()), score.shape[1])
    return stride * iy, stride * ix


def show_crops(panels: dict, gt, corner: tuple[int, int], size: int, suptitle=None, width: float = 2.9):
    """SR crops side by side (Fig. 8, 15): each ``(3, H, W)`` image of ``panels`` cut at ``corner``
    to ``size`` x ``size``, titled with its PSNR against ``gt`` over the whole frame (``gt``
    itself is drawn last)."""
    from .metrics import psnr

    y0, x0 = corner
    items = list(panels.items()) + [("ground truth", gt)]
    fig, axes = plt.subplots(1, len(items), figsize=(width * len(items), width + 1.2), layout="constrained")
    for ax, (name, img) in zip(axes, items):
        title = name if img is gt else f"{name}\n{psnr(img[None], gt[None]):.2f} dB"
        ax.imshow(_np(img[:, y0:y0 + size, x0:x0 + size].permute(1, 2, 0)).clip(0, 1))
        ax.set(title=title, xticks=[], yticks=[])
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig
