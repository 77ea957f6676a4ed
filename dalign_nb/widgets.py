"""Interactive viewers of offsets, masks and aligned features, and a DCN playground (Sec. 3-4).

The paper reads its models by looking at them: offsets beside optical flow (Fig. 4-5), the
N offsets of a decomposed DCN sorted by their l1 distance to the flow, with their pixelwise
diversity (Fig. 6), and the aligned features of N = 1 and N = 15 (Fig. 7). The viewers make
those pictures for any EDVR of ``dalign_nb.models.edvr`` (DCN, decomposed with any N and G,
flow, image, flow-guided alignment) on any clip of ``dalign_nb.data`` (a synthetic scene
with exact flow and occlusion, a bundled clip, a video file):

* ``OffsetViewer(model, clip)``: click a pixel of the reference frame (or use the sliders);
  choose a neighbour frame, a PCD level and a deformable group; see the neighbour frame with
  that pixel's N sampling positions (arrows coloured and dots sized by their mask values)
  beside the exact and the estimated flow, the selected offset's field in the flow colour
  wheel, the mean l1 distance of every offset to the flow, the diversity heatmap, the mask
  and the occlusion. A slider walks through the N offsets sorted by their distance to the
  flow (Fig. 6).
* ``AlignedFeatureViewer({"N = 1": m1, "N = 15": m15}, clip)``: a channel of the reference
  feature, of the unaligned neighbour feature and of the aligned one, per level, one row
  per model (Fig. 7).
* ``DCNPlayground()``: move the offset of one kernel tap and watch its sampling position,
  its four bilinear weights and the output value of Eq. 1 / Eq. 7 change.

How they are built: each viewer draws one matplotlib figure (Agg, no pyplot state) and shows
it as a PNG in an ``ipywidgets.Image``; ``ipyevents`` reports clicks on that picture in the
picture's own pixels, which matplotlib's transforms map back to a panel's data coordinates.
ipyevents rather than ipympl because the figure then stays an ordinary Agg figure: the PNG
a reader sees live is also the static picture stored in the executed notebook (each viewer's
``_repr_mimebundle_`` offers both; JupyterLab shows the widget, a code host the PNG), and the
notebook's other figures stay inline (ipympl needs ``%matplotlib widget``, which turns every
figure of a notebook into a widget that a code host cannot show).

The numbers come from ``dalign_nb.analysis`` (no widget library): a model runs once per
centre frame (``model_outputs``, cached); an interaction only recomputes cheap per-level
statistics (``analyse_offsets``, cached) and redraws. The names of ``analysis`` are
re-exported here.
``python -m dalign_nb.bench widgets`` (``benchmark``) times the redraws.
"""

from __future__ import annotations

import base64
import contextlib
import io
import time
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import torch
from ipyevents import Event
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image as PILImage
from torch import Tensor, nn

from .analysis import (
    LEVEL_INDEX,
    ClipFrames,
    ModelOutputs,
    OffsetAnalysis,
    analyse_offsets,
    clip_frames,
    forward_backward_occlusion,
    level_occlusion,
    model_outputs,
    offset_layout,
)
from .flow import flow_to_color
from .models.edvr import LEVELS
from .ops import deform_conv2d, kernel_grid

__all__ = [
    "AlignedFeatureViewer",
    "ClipFrames",
    "DCNPlayground",
    "ModelOutputs",
    "OffsetAnalysis",
    "OffsetViewer",
    "analyse_offsets",
    "benchmark",
    "clip_frames",
    "forward_backward_occlusion",
    "model_outputs",
    "offset_layout",
]

# --------------------------------------------------------------------------- drawing helpers


def _wheel_key(max_flow: float, size: int = 41) -> np.ndarray:
    """The colour wheel as a picture: the colour of every vector up to ``max_flow`` px, (size, size, 3)."""
    r = np.linspace(-max_flow, max_flow, size, dtype=np.float32)
    u, v = np.meshgrid(r, r)
    key = flow_to_color(np.stack([u, v], -1), max_flow=max_flow).copy()
    key[u**2 + v**2 > max_flow**2] = 255
    return key


def _colour(flow_uv: Tensor, max_flow: float) -> np.ndarray:
    """A (2, h, w) flow in (u, v) as a colour-wheel picture."""
    return flow_to_color(flow_uv.permute(1, 2, 0).numpy(), max_flow=max_flow)


def _title(ax, title: str, fontsize: int = 9, pad: float = 4) -> None:
    # A fixed height (y): matplotlib's automatic title placement measures every tick label
    # and took a third of a redraw.
    ax.set_title(title, fontsize=fontsize, y=1.0, pad=pad)


def _image(ax, img, title: str, **kw):
    im = ax.imshow(img, interpolation="nearest", **kw)
    _title(ax, title)
    return im


def _strip(ax) -> None:
    """Remove what the previous view drew, keeping the axes, their ticks and their insets.

    Clearing an axes rebuilds its ticks, which took most of a redraw; removing the artists
    does not.
    """
    for artist in [*ax.images, *ax.lines, *ax.collections, *ax.patches, *ax.texts]:
        artist.remove()
    if ax.legend_ is not None:
        ax.legend_.remove()
    ax.ignore_existing_data_limits = True  # the next artist sets the data limits afresh
    ax.set_autoscale_on(True)
    for child in ax.child_axes:
        _strip(child)


class _Panel:
    """One figure of a viewer, shown as a PNG in its own ``ipywidgets.Image``.

    depends: the names of the controls whose change redraws it (None: all of them), so that
    an interaction redraws only the panels it changes. axes: name -> [left, bottom, width,
    height] in figure fractions; the ones in ``pictures`` show images and have no axis.
    """

    def __init__(self, name: str, figsize, axes: dict, depends=None, pictures=(), dpi: int = 85):
        self.name, self.depends = name, None if depends is None else set(depends)
        self.fig = Figure(figsize=figsize, dpi=dpi)
        self.canvas = FigureCanvasAgg(self.fig)
        self.axes = {key: self.fig.add_axes(rect) for key, rect in axes.items()}
        for key in pictures:
            self.axes[key].set_axis_off()
            self.axes[key].set_anchor("N")  # a wide picture sits under its title
        self.colorbar = None
        self.pixels = None  # (H, W, 4) uint8, the last picture
        self.renders = 0
        self.image = widgets.Image(format="png")
        self.image.add_class(f"dalign-panel-{name}")

    def needs(self, changed: set | None) -> bool:
        return changed is None or self.depends is None or bool(self.depends & changed)

    def render(self) -> None:
        """Draw the figure and show it (PNG, fast compression: the browser is next door)."""
        self.canvas.draw()
        self.pixels = np.asarray(self.canvas.buffer_rgba()).copy()
        self.image.value = _png(self.pixels)
        self.renders += 1

    def set_colorbar(self, mappable, rect) -> None:
        """A colour bar for ``mappable`` in a fixed place, made once and updated after."""
        if self.colorbar is None:
            self.colorbar = self.fig.colorbar(mappable, cax=self.fig.add_axes(rect))
            self.colorbar.locator = MaxNLocator(3)
            self.colorbar.ax.tick_params(labelsize=7)
        else:
            self.colorbar.update_normal(mappable)
        self.colorbar.ax.set_visible(True)

    def hide_colorbar(self) -> None:
        if self.colorbar is not None:
            self.colorbar.ax.set_visible(False)

    def figure_xy(self, ax, x: float, y: float) -> tuple[float, float]:
        """Data coordinates (x, y) of ``ax`` -> pixel coordinates in the panel's PNG (origin top-left)."""
        px, py = ax.transData.transform((x, y))
        return float(px), float(self.fig.bbox.height - py)

    def data_xy(self, ax, px: float, py: float) -> tuple[float, float]:
        """Pixel coordinates in the panel's PNG (origin top-left) -> data coordinates of ``ax``."""
        x, y = ax.transData.inverted().transform((px, self.fig.bbox.height - py))
        return float(x), float(y)


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="png", compress_level=1)
    return buf.getvalue()


class _View:
    """Controls, rows of panels and a line of numbers; one redraw per interaction.

    Subclasses pass their controls (name -> widget) and rows of ``_Panel`` and implement
    ``_draw_<panel name>(panel)`` (or ``_draw_panel``) and ``_readout()``.
    """

    def __init__(self, controls: dict, rows: list):
        self.controls, self.rows = controls, rows
        self.panels = {p.name: p for row in rows for p in row}
        self.readout = widgets.HTML()
        self.readout.add_class("dalign-readout")
        self.redraw_seconds: list[tuple[float, float]] = []  # (wall, CPU of this process) per redraw
        self._held: set | None = None
        boxes = [widgets.HBox(list(controls.values())[i:i + 3]) for i in range(0, len(controls), 3)]
        pictures = [widgets.HBox([p.image for p in row], layout=widgets.Layout(width="100%")) for row in rows]
        for row in rows:  # a row fits the notebook's width: each picture shrinks by the same factor
            widths = [p.fig.bbox.width for p in row]
            for p, w in zip(row, widths):
                p.image.layout = widgets.Layout(width=f"{100 * w / sum(widths):.2f}%", max_width=f"{w:.0f}px",
                                                height="auto")
        self.widget = widgets.VBox([*boxes, *pictures, self.readout])
        self.widget.add_class("dalign-viewer")
        for name, control in controls.items():
            control.observe(lambda change, name=name: self.redraw({name}), names="value")

    @contextlib.contextmanager
    def hold(self):
        """Change several controls with a single redraw at the end."""
        self._held = set()
        try:
            yield
        finally:
            changed, self._held = self._held, None
        if changed:
            self.redraw(changed)

    def select(self, **values) -> None:
        """Set controls by name, with one redraw."""
        with self.hold():
            for name, value in values.items():
                self.controls[name].value = value

    def redraw(self, changed: set | None = None) -> None:
        """Redraw the panels that depend on the ``changed`` controls (all when None)."""
        if self._held is not None:
            self._held |= changed or set(self.controls)
            return
        start, cpu = time.perf_counter(), time.process_time()
        self._prepare()
        for panel in self.panels.values():
            if panel.needs(changed):
                for ax in panel.axes.values():
                    _strip(ax)
                self._draw_panel(panel)
                panel.render()
        self.readout.value = f"<span>{self._readout()}</span>"
        self.redraw_seconds.append((time.perf_counter() - start, time.process_time() - cpu))

    def _prepare(self) -> None:
        """Compute what the panels share before drawing them."""

    def _draw_panel(self, panel: _Panel) -> None:
        """Draw one panel: ``_draw_<panel name>``."""
        getattr(self, f"_draw_{panel.name}")(panel)

    def _readout(self) -> str:
        return ""

    def picture(self) -> np.ndarray:
        """The panels as one picture (H, W, 4), laid out as on screen."""
        rows = [np.concatenate([p.pixels for p in row], axis=1) for row in self.rows]
        width = max(r.shape[1] for r in rows)
        pad = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
        return np.concatenate(pad, axis=0)

    def png(self) -> bytes:
        return _png(self.picture())

    def _repr_mimebundle_(self, **kwargs):
        # JupyterLab renders the live widget; a notebook stored without widget state (and a
        # code host) shows the static picture of the current view.
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        bundle["image/png"] = base64.b64encode(self.png()).decode("ascii")
        bundle["text/plain"] = repr(self)
        return bundle


def _dropdown(description, options, value, width="220px"):
    return widgets.Dropdown(description=description, options=options, value=value,
                            layout=widgets.Layout(width=width), style={"description_width": "initial"})


def _slider(description, lo, hi, value, width="300px", **kw):
    cls = widgets.FloatSlider if isinstance(value, float) else widgets.IntSlider
    return cls(description=description, min=lo, max=hi, value=value, disabled=hi <= lo,
               continuous_update=False, layout=widgets.Layout(width=width),
               style={"description_width": "initial"}, **kw)


def _frame_options(t_len: int) -> list:
    half = t_len // 2
    return [(f"{t - half:+d}" + (" (centre)" if t == half else ""), t) for t in range(t_len)]


def _level_name(level: str) -> str:
    return level.upper() if level != "cascade" else "cascade"


# --------------------------------------------------------------------------- the offset viewer

_FRAME = ("centre", "frame", "level")
_GROUP = (*_FRAME, "group")
_PIXEL = ("centre", "y", "x")
_BOX = (0.03, 0.03, 0.94, 0.85)  # a picture filling its panel, room for a title above


class OffsetViewer(_View):
    """Offsets of one pixel and their fields beside the optical flow (Fig. 4-6 of the paper).

    model: an EDVR of ``dalign_nb.models.edvr``; clip: a clip of ``dalign_nb.data`` or a video
    path; centre: the clip's frame to align to (default its middle; exact flows exist only
    there); frame: the neighbour's index in the model's window (default the one before the
    centre); pixel: (y, x) of the reference frame in LR pixels (default the middle).
    ``widget`` is the ipywidgets layout; the viewer displays itself in a notebook.

    Panels (each its own picture, redrawn only when a control it depends on changes):
    reference (click a pixel), neighbour (the pixel's N sampling positions, the exact and
    DIS flow vectors), offset (the selected offset's field, colour wheel), flow (the same
    colour scale), distance (mean l1 distance of each offset to the flow, sorted, red: the
    selected one; crosses: at the pixel), diversity, mask, occlusion.
    """

    def __init__(self, model: nn.Module, clip, *, centre: int | None = None, frame: int | None = None,
                 level: str = "l1", group: int = 0, pixel: tuple[int, int] | None = None):
        self.model, self.clip = model, clip
        self._frames: dict = {}
        self._outputs: dict = {}
        self._analyses: dict = {}
        length = None if isinstance(clip, (str, Path)) else len(clip)
        self.centre_index = length // 2 if centre is None and length else centre
        frames, outputs = self._load(self.centre_index)
        t_len, _, h, w = frames.lr.shape
        self.kind, self.groups, self.num_offsets, self.kernel_size = offset_layout(model)
        if level not in outputs.levels:
            raise ValueError(f"level must be one of the model's {outputs.levels}, got {level!r}")
        controls = {
            "frame": _dropdown("neighbour", _frame_options(t_len),
                               max(t_len // 2 - 1, 0) if frame is None else frame),
            "level": _dropdown("level", [(_level_name(lv), lv) for lv in outputs.levels], level, "160px"),
            "group": _slider("group g", 0, self.groups - 1, group, "220px"),
            "rank": _slider(f"offset, by l1 distance to flow (of {self.num_offsets})", 0,
                            self.num_offsets - 1, 0, "460px"),
            "y": _slider("pixel y", 0, h - 1, h // 2 if pixel is None else pixel[0]),
            "x": _slider("pixel x", 0, w - 1, w // 2 if pixel is None else pixel[1]),
        }
        if length is not None and length > t_len:
            last = length - 1 - t_len // 2
            controls["centre"] = _slider("centre frame", t_len // 2, last, self.centre_index)
        size = (3.0, 3.0)
        top = [_Panel("reference", size, {"ax": _BOX}, _PIXEL, ["ax"]),
               _Panel("neighbour", size, {"ax": _BOX}, None, ["ax"]),
               _Panel("offset", size, {"ax": _BOX}, (*_GROUP, "rank"), ["ax"]),
               _Panel("flow", (3.6, 3.0), {"ax": (0.03, 0.03, 0.78, 0.85), "key": (0.80, 0.62, 0.19, 0.23)},
                      _FRAME, ["ax", "key"])]
        bottom = [_Panel("distance", size, {"ax": (0.15, 0.12, 0.82, 0.76)}, None),
                  _Panel("diversity", size, {"ax": (0.03, 0.03, 0.78, 0.85)}, _GROUP, ["ax"]),
                  _Panel("mask", size, {"ax": (0.03, 0.03, 0.78, 0.85)}, (*_GROUP, "rank"), ["ax"]),
                  _Panel("occlusion", (3.6, 3.0), {"ax": (0.03, 0.03, 0.78, 0.85)}, _FRAME, ["ax"])]
        super().__init__(controls, [top, bottom])
        self.events = Event(source=self.panels["reference"].image, watched_events=["click"],
                            prevent_default_action=True)
        self.events.on_dom_event(self._on_click)
        self.redraw()

    def __repr__(self) -> str:
        return (f"OffsetViewer({self.kind}, G={self.groups}, N={self.num_offsets}, "
                f"clip={self.frames.name!r}, centre frame {self.frames.centre})")

    # ---- state
    def _load(self, centre: int | None) -> tuple[ClipFrames, ModelOutputs]:
        """Frames and model outputs around ``centre``: computed once per centre frame."""
        if centre not in self._outputs:
            frames = clip_frames(self.clip, self.model.num_frame, centre)
            self._frames[centre], self._outputs[centre] = frames, model_outputs(self.model, frames)
        return self._frames[centre], self._outputs[centre]

    def _centre(self) -> int | None:
        return self.controls["centre"].value if "centre" in self.controls else self.centre_index

    @property
    def frames(self) -> ClipFrames:
        return self._load(self._centre())[0]

    @property
    def outputs(self) -> ModelOutputs:
        return self._load(self._centre())[1]

    @property
    def pixel(self) -> tuple[int, int]:
        return self.controls["y"].value, self.controls["x"].value

    def analysis(self) -> OffsetAnalysis:
        c = self.controls
        key = (self._centre(), c["frame"].value, c["level"].value, c["group"].value)
        if key not in self._analyses:
            self._analyses[key] = analyse_offsets(self.outputs, self.frames, *key[1:])
        return self._analyses[key]

    def _on_click(self, event: dict) -> None:
        """A click on the reference picture selects the pixel under it."""
        if "dataX" not in event:
            return
        panel = self.panels["reference"]
        x, y = panel.data_xy(panel.axes["ax"], event["dataX"], event["dataY"])
        h, w = self.frames.lr.shape[-2:]
        if -0.5 <= x < w - 0.5 and -0.5 <= y < h - 0.5:
            self.select(y=int(round(y)), x=int(round(x)))

    def click_position(self, y: int, x: int) -> tuple[float, float]:
        """Where pixel (y, x) of the reference frame is in the reference picture, (dataX, dataY)."""
        panel = self.panels["reference"]
        return panel.figure_xy(panel.axes["ax"], x, y)

    def sampling_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """The selected pixel's N sampling positions, ``(starts, ends)`` (N, 2) as (y, x) in LR px.

        A DCN, and the decomposition on the kernel grid, samples at ``p + p_k + dp_k`` (its kernel
        grid ``p_k``, Eq. 1; ``AlignmentConfig.kernel_grid_size``), the other kinds at ``p + dp_n``;
        at level l a level pixel covers ``2^(l-1)`` LR pixels, and the arrows start at its centre.
        """
        a = self.analysis()
        s = a.scale
        yl, xl = self.pixel[0] // s, self.pixel[1] // s
        centre = np.array([(yl + 0.5) * s - 0.5, (xl + 0.5) * s - 0.5])
        grid = np.zeros((self.num_offsets, 2))
        if self.kernel_size:
            grid = (kernel_grid(self.kernel_size).numpy() - self.kernel_size // 2) * s
        starts = centre + grid
        return starts, starts + a.offsets[:, :, yl, xl].numpy() * s

    # ---- drawing
    def _prepare(self) -> None:
        a = self.analysis()
        self._a, self._idx = a, int(a.order[self.controls["rank"].value])
        self._yl, self._xl = self.pixel[0] // a.scale, self.pixel[1] // a.scale

    def _draw_reference(self, panel) -> None:
        half = len(self.frames.lr) // 2
        ax = panel.axes["ax"]
        _image(ax, self.frames.lr[half].permute(1, 2, 0).numpy(), "reference frame: click a pixel")
        ax.plot(self.pixel[1], self.pixel[0], "+", ms=16, mew=2.5, color="red")

    def _draw_neighbour(self, panel) -> None:
        a, idx, ax = self._a, self._idx, panel.axes["ax"]
        t, half = self.controls["frame"].value, len(self.frames.lr) // 2
        _image(ax, self.frames.lr[t].permute(1, 2, 0).numpy(),
               f"frame {t - half:+d}: {self.num_offsets} sampling position{'s' * (self.num_offsets > 1)}")
        starts, ends = self.sampling_positions()
        d = ends - starts
        masks = None if a.masks is None else a.masks[:, self._yl, self._xl].numpy()
        if masks is None:
            ax.quiver(starts[:, 1], starts[:, 0], d[:, 1], d[:, 0], color="orange", angles="xy",
                      scale_units="xy", scale=1, width=0.008)
            ax.scatter(ends[:, 1], ends[:, 0], s=25, c="orange", edgecolors="black", linewidths=0.6, zorder=3)
        else:  # colour and size by the mask: a switched-off offset fades and shrinks
            ax.quiver(starts[:, 1], starts[:, 0], d[:, 1], d[:, 0], masks, cmap="viridis", clim=(0, 1),
                      angles="xy", scale_units="xy", scale=1, width=0.008)
            ax.scatter(ends[:, 1], ends[:, 0], s=10 + 70 * masks, c=masks, cmap="viridis", vmin=0, vmax=1,
                       edgecolors="black", linewidths=0.6, zorder=3)
        ax.scatter(ends[idx, 1], ends[idx, 0], s=160, facecolors="none", edgecolors="red", linewidths=1.8,
                   zorder=4, label=f"offset {idx}")
        centre, tips = starts.mean(0), [ends, starts]
        arrows = ((a.flow_exact, "cyan", "exact flow"), (a.flow_est, "magenta", "DIS flow"))
        for flow, colour, name in arrows:
            if flow is not None:
                u, v = (float(f) * a.scale for f in flow[:, self._yl, self._xl])
                ax.annotate("", (centre[1] + u, centre[0] + v), (centre[1], centre[0]),
                            arrowprops=dict(arrowstyle="-|>", color=colour, lw=2, ls="--"))
                ax.plot([], [], "--", color=colour, lw=2, label=name)
                tips.append(np.array([[centre[0] + v, centre[1] + u]]))
        ax.plot(centre[1], centre[0], "+", ms=12, mew=2, color="red")
        r = max(5.0, float(np.abs(np.concatenate(tips) - centre).max()) + 2.5)
        ax.set_xlim(centre[1] - r, centre[1] + r)
        ax.set_ylim(centre[0] + r, centre[0] - r)
        ax.legend(loc="lower left", fontsize=7, framealpha=0.7)

    def _draw_offset(self, panel) -> None:
        a, rank = self._a, self.controls["rank"].value
        _image(panel.axes["ax"], _colour(self._a.offsets[self._idx].flip(0), a.max_flow),
               f"offset {self._idx} (rank {rank}), group {self.controls['group'].value}")

    def _draw_flow(self, panel) -> None:
        a = self._a
        _image(panel.axes["ax"], _colour(a.flow, a.max_flow), "exact flow" if a.flow_exact is not None
               else "DIS flow (no exact flow)")
        m = a.max_flow
        _image(panel.axes["key"], _wheel_key(m), f"key: {m:.1f} px", extent=(-m, m, m, -m))

    def _draw_distance(self, panel) -> None:
        a, rank, ax = self._a, self.controls["rank"].value, panel.axes["ax"]
        n = len(a.order)
        colours = ["tab:red" if i == rank else "tab:blue" for i in range(n)]
        ax.bar(range(n), a.mean_distance.numpy(), color=colours)
        ax.plot(range(n), a.distance[a.order, self._yl, self._xl].numpy(), "kx")  # at the selected pixel
        ax.set_xticks(range(n), [str(int(i)) for i in a.order], fontsize=6)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlim(-0.6, n - 0.4)
        _title(ax, "l1 distance to flow (px), sorted")

    def _draw_diversity(self, panel) -> None:
        d = self._a.diversity
        im = _image(panel.axes["ax"], d.numpy(), f"diversity: std of the {self.num_offsets} offsets (px)",
                    cmap="magma", vmin=0, vmax=max(float(d.max()), 1e-3))
        panel.set_colorbar(im, (0.83, 0.08, 0.04, 0.75))

    def _draw_mask(self, panel) -> None:
        a, idx = self._a, self._idx
        if a.masks is None:
            _image(panel.axes["ax"], np.full(a.diversity.shape, 0.85), "no modulation masks", cmap="gray",
                   vmin=0, vmax=1)
            panel.hide_colorbar()
            return
        im = _image(panel.axes["ax"], a.masks[idx].numpy(), f"mask of offset {idx}", cmap="viridis",
                    vmin=0, vmax=1)
        panel.set_colorbar(im, (0.83, 0.08, 0.04, 0.75))

    def _draw_occlusion(self, panel) -> None:
        exact = self.frames.occlusion_exact
        _image(panel.axes["ax"], self._a.occlusion.numpy(), "occlusion" + ("" if exact else " (DIS check)"),
               cmap="gray", vmin=0, vmax=1)

    def _readout(self) -> str:
        a, idx, yl, xl = self._a, self._idx, self._yl, self._xl
        t, half = self.controls["frame"].value, len(self.frames.lr) // 2
        y, x = self.pixel
        off = a.offsets[idx, :, yl, xl] * a.scale
        parts = [f"pixel (y, x) = ({y}, {x})",
                 f"frame {t - half:+d}, {_level_name(self.controls['level'].value)} "
                 f"({a.scale} LR px per level px)",
                 f"offset {idx}: (dx, dy) = ({float(off[1]):+.2f}, {float(off[0]):+.2f})"]
        if a.masks is not None:
            parts.append(f"mask {float(a.masks[idx, yl, xl]):.2f}")
        for flow, name in ((a.flow_exact, "exact flow"), (a.flow_est, "DIS flow")):
            if flow is not None:
                u, v = (float(f) * a.scale for f in flow[:, yl, xl])
                parts.append(f"{name} (u, v) = ({u:+.2f}, {v:+.2f})")
        parts += [f"l1 distance {float(a.distance[idx, yl, xl]) * a.scale:.2f}",
                  f"diversity {float(a.diversity[yl, xl]) * a.scale:.2f}",
                  "occluded" if bool(a.occlusion[yl, xl]) else "visible", "(LR px)"]
        return " &middot; ".join(parts)


# --------------------------------------------------------------------------- aligned features


class AlignedFeatureViewer(_View):
    """Reference, unaligned and aligned features, one row per model (Fig. 7 of the paper).

    models: ``{name: EDVR}`` with the same number of input frames, e.g. ``{"N = 1": m1,
    "N = 15": m15}``. The alignment module's output mixes channels (the 1x1 convolution of
    Eq. 3), so its channel c is not the reference's channel c: compare where structure is
    and where it is missing (dark holes at occlusions, inside the red contour).
    """

    def __init__(self, models: dict, clip, *, centre: int | None = None, frame: int | None = None,
                 level: str = "l1", channel: int = 0):
        first = next(iter(models.values()))
        if any(m.num_frame != first.num_frame for m in models.values()):
            raise ValueError("all models must take the same number of frames")
        self.frames = clip_frames(clip, first.num_frame, centre)
        self.outputs = {name: model_outputs(m, self.frames) for name, m in models.items()}
        t_len = len(self.frames.lr)
        channels = min(o.features[0].shape[1] for o in self.outputs.values())
        levels = [lv for lv in LEVELS if all(lv in o.feature_levels for o in self.outputs.values())]
        if level not in levels:
            raise ValueError(f"level must be one that every model aligns features at, {tuple(levels)}, "
                             f"got {level!r}")
        controls = {
            "frame": _dropdown("neighbour", _frame_options(t_len),
                               max(t_len // 2 - 1, 0) if frame is None else frame),
            "level": _dropdown("level", [(_level_name(lv), lv) for lv in levels], level, "160px"),
            "channel": _slider("channel", 0, channels - 1, channel),
            "mean": widgets.Checkbox(description="mean |feature| over channels", value=False),
        }
        boxes = {what: (0.02 + 0.33 * i, 0.03, 0.29, 0.82)
                 for i, what in enumerate(("ref", "nbr", "aligned"))}
        rows = [[_Panel(f"model{i}", (10.0, 3.3), boxes, None, list(boxes))] for i in range(len(models))]
        self._names = dict(zip((f"model{i}" for i in range(len(models))), models))
        super().__init__(controls, rows)
        self.redraw()

    def __repr__(self) -> str:
        return f"AlignedFeatureViewer(models={list(self.outputs)}, clip={self.frames.name!r})"

    def maps(self, name: str) -> dict[str, Tensor]:
        """The three (h_l, w_l) maps of model ``name`` for the current controls."""
        c, o = self.controls, self.outputs[name]
        t, level = c["frame"].value, c["level"].value
        feats = o.features[LEVEL_INDEX[level]]  # (T, C, h_l, w_l)
        stack = {"ref": feats[len(feats) // 2], "nbr": feats[t], "aligned": o.aligned[level][t]}
        if c["mean"].value:
            return {k: v.abs().mean(0) for k, v in stack.items()}
        return {k: v[c["channel"].value] for k, v in stack.items()}

    def _draw_panel(self, panel: _Panel) -> None:  # one row: a model's three maps
        c, name = self.controls, self._names[panel.name]
        t, level = c["frame"].value, c["level"].value
        half = len(self.frames.lr) // 2
        what = "mean |feature|" if c["mean"].value else f"channel {c['channel'].value}"
        maps = self.maps(name)
        lo, hi = min(float(m.min()) for m in maps.values()), max(float(m.max()) for m in maps.values())
        titles = {"ref": f"{name}: reference, {what}", "nbr": f"frame {t - half:+d}, unaligned",
                  "aligned": f"frame {t - half:+d}, aligned ({_level_name(level)})"}
        for key, m in maps.items():
            _image(panel.axes[key], m.numpy(), titles[key], cmap="gray", vmin=lo, vmax=hi + 1e-6)
        scale = self.frames.lr.shape[-1] // maps["aligned"].shape[-1]
        occ = level_occlusion(self.frames.occlusion[t], scale).float().numpy()
        if occ.any():
            panel.axes["aligned"].contour(occ, levels=[0.5], colors="red", linewidths=0.8)

    def _readout(self) -> str:
        lines = []
        for name in self.outputs:
            maps = self.maps(name)
            corr = np.corrcoef(maps["aligned"].flatten().numpy(), maps["ref"].flatten().numpy())[0, 1]
            lines.append(f"{name}: correlation of the aligned map with the reference map {corr:+.2f}")
        return " &middot; ".join(lines)


# --------------------------------------------------------------------------- the DCN playground


def _playground_image() -> np.ndarray:
    """A 9x9 grey test picture with values a reader can follow (a ramp plus a bright block)."""
    y, x = np.mgrid[0:9, 0:9]
    img = 0.05 * x + 0.02 * y
    img[3:6, 5:8] += 0.5
    return np.round(img, 2)


class DCNPlayground(_View):
    """One output pixel of a 3x3 deformable convolution (Eq. 1; Eq. 7 with a mask), by hand.

    Pick a kernel tap k and move its offset (dy, dx) and mask m with the sliders: the picture
    shows the sampling positions ``p + p_k + dp_k``, the four neighbours of tap k's position
    with their bilinear weights, and each tap's contribution ``w_k m_k x(p + p_k + dp_k)``
    to the output ``y(p)``, checked against ``dalign_nb.ops.deform_conv2d`` and torchvision's
    ``deform_conv2d`` on every redraw.
    """

    def __init__(self, image=None, weight=None, pixel: tuple[int, int] = (4, 4)):
        self.x = torch.as_tensor(_playground_image() if image is None else image, dtype=torch.float64)
        g = torch.Generator().manual_seed(0)
        w = torch.randn(3, 3, generator=g, dtype=torch.float64) / 3 if weight is None else weight
        self.weight = torch.round(torch.as_tensor(w, dtype=torch.float64) * 100) / 100  # (3, 3)
        self.p = pixel
        self.offsets = np.zeros((9, 2))  # (dy, dx) per tap
        self.masks = np.ones(9)
        controls = {
            "tap": _dropdown("tap k", [(f"{k}: p_k = ({k // 3 - 1:+d}, {k % 3 - 1:+d})", k)
                                       for k in range(9)], 0, "240px"),
            "dy": _slider("dy", -3.0, 3.0, 0.0, step=0.05),
            "dx": _slider("dx", -3.0, 3.0, 0.0, step=0.05),
            "mask": _slider("mask m_k", 0.0, 1.0, 1.0, step=0.05),
        }
        axes = {"input": (0.03, 0.1, 0.3, 0.75), "bilinear": (0.37, 0.1, 0.27, 0.75),
                "output": (0.71, 0.15, 0.27, 0.68)}
        super().__init__(controls, [[_Panel("playground", (12.0, 4.2), axes, None, ["input", "bilinear"])]])
        self.redraw()

    def __repr__(self) -> str:
        return f"DCNPlayground(pixel={self.p}, image {tuple(self.x.shape)})"

    def redraw(self, changed: set | None = None) -> None:
        k = self.controls["tap"].value
        if changed == {"tap"} and self._held is None:  # show the chosen tap's values, one redraw
            with self.hold():
                self.controls["dy"].value, self.controls["dx"].value = map(float, self.offsets[k])
                self.controls["mask"].value = float(self.masks[k])
                self._held.add("tap")
            return
        # store the sliders' values once they are all set (not while a tap's values are shown)
        if self._held is None and changed and changed & {"dy", "dx", "mask"} and "tap" not in changed:
            self.offsets[k] = self.controls["dy"].value, self.controls["dx"].value
            self.masks[k] = self.controls["mask"].value
        super().redraw(changed)

    def positions(self) -> np.ndarray:
        """Sampling positions ``p + p_k + dp_k`` of the 9 taps, (9, 2) as (y, x)."""
        grid = kernel_grid(3).numpy() - 1  # p_k centred, (9, 2) as (dy, dx)
        return np.asarray(self.p, float) + grid + self.offsets

    def sample(self, y: float, x: float) -> tuple[float, list]:
        """Bilinear ``x(y, x)`` with zeros outside, and its four (qy, qx, weight) terms."""
        h, w = self.x.shape
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        ly, lx = y - y0, x - x0
        terms = [(y0 + dy, x0 + dx, (ly if dy else 1 - ly) * (lx if dx else 1 - lx))
                 for dy in (0, 1) for dx in (0, 1)]
        value = sum(wt * float(self.x[qy, qx]) for qy, qx, wt in terms if 0 <= qy < h and 0 <= qx < w)
        return value, terms

    def contributions(self) -> np.ndarray:
        """``w_k m_k x(p + p_k + dp_k)`` per tap: their sum is ``y(p)`` (Eq. 1 / Eq. 7)."""
        w = self.weight.flatten().numpy()
        samples = [self.sample(*pos)[0] for pos in self.positions()]
        return w * self.masks * np.array(samples)

    def library_outputs(self) -> tuple[float, float]:
        """``y(p)`` from ``dalign_nb.ops.deform_conv2d`` and from torchvision's op."""
        h, w = self.x.shape
        off = torch.zeros(1, 18, h, w, dtype=torch.float64)
        off[0, :, self.p[0], self.p[1]] = torch.from_numpy(self.offsets.reshape(-1))
        mask = torch.ones(1, 9, h, w, dtype=torch.float64)
        mask[0, :, self.p[0], self.p[1]] = torch.from_numpy(self.masks)
        x, wt = self.x[None, None], self.weight[None, None]
        outs = [deform_conv2d(x, off, wt, None, mask, 1, 1, 1, backend=b)
                for b in ("decomposed", "torchvision")]
        return tuple(float(out[0, 0, self.p[0], self.p[1]]) for out in outs)

    def _draw_playground(self, panel) -> None:
        k = self.controls["tap"].value
        pos = self.positions()
        grid = np.asarray(self.p, float) + kernel_grid(3).numpy() - 1
        vmax = float(self.x.max())
        ax = panel.axes["input"]
        _image(ax, self.x.numpy(), "x: grid p + p_k (blue), samples (orange)", cmap="gray", vmin=0, vmax=vmax)
        ax.scatter(grid[:, 1], grid[:, 0], s=30, c="tab:blue", edgecolors="white", zorder=3)
        ax.scatter(pos[:, 1], pos[:, 0], s=30, c="orange", edgecolors="black", zorder=4)
        for (y0, x0), (y1, x1) in zip(grid, pos):
            ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", color="yellow", lw=1))
        ax.scatter(pos[k, 1], pos[k, 0], s=150, facecolors="none", edgecolors="red", linewidths=2, zorder=5)
        ax = panel.axes["bilinear"]
        value, terms = self.sample(*pos[k])
        _image(ax, self.x.numpy(), f"tap {k}: x({pos[k, 0]:.2f}, {pos[k, 1]:.2f}) = {value:.3f}", cmap="gray",
               vmin=0, vmax=vmax)
        for qy, qx, wt in terms:
            ax.scatter(qx, qy, s=600 * wt + 20, c="tab:orange", edgecolors="k", zorder=3)
            ax.text(qx + 0.15, qy - 0.15, f"{wt:.2f}", fontsize=9,
                    bbox=dict(facecolor="white", alpha=0.8, lw=0))
        ax.scatter(pos[k, 1], pos[k, 0], marker="x", s=80, c="tab:red", zorder=4)
        ax.set_xlim(pos[k, 1] - 2, pos[k, 1] + 3)
        ax.set_ylim(pos[k, 0] + 3, pos[k, 0] - 2)
        ax = panel.axes["output"]
        contrib = self.contributions()
        ax.bar(range(9), contrib, color=["tab:red" if i == k else "tab:blue" for i in range(9)])
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xticks(range(9))
        ax.tick_params(labelsize=8)
        ax.set_xlabel("tap k", fontsize=8)
        _title(ax, f"w_k m_k x(p + p_k + dp_k); y(p) = {contrib.sum():.4f}")

    def _readout(self) -> str:
        k = self.controls["tap"].value
        by_hand = self.contributions().sum()
        ops_y, tv_y = self.library_outputs()
        return (f"y{self.p} by hand {by_hand:.6f} &middot; dalign_nb.ops {ops_y:.6f} &middot; "
                f"torchvision {tv_y:.6f} &middot; tap {k}: w = {float(self.weight.flatten()[k]):+.2f}, "
                f"offset (dy, dx) = ({self.offsets[k, 0]:+.2f}, {self.offsets[k, 1]:+.2f}), "
                f"m = {self.masks[k]:.2f}")


# --------------------------------------------------------------------------- benchmark


def _time_interactions(viewer: OffsetViewer, repeats: int) -> dict:
    """Median seconds (wall, CPU) of the redraws after each kind of interaction."""
    h, w = viewer.frames.lr.shape[-2:]
    steps = {
        "click": lambda i: viewer._on_click(dict(zip(
            ("dataX", "dataY"), viewer.click_position((3 + 7 * i) % h, (w - 5 - 5 * i) % w)))),
        "offset slider": lambda i: viewer.select(rank=(i + 1) % viewer.num_offsets),
        "level": lambda i: viewer.select(level=("l2", "l1")[i % 2]),
        "neighbour": lambda i: viewer.select(frame=(2, 0)[i % 2]),
    }
    if viewer.num_offsets == 1:
        del steps["offset slider"]
    times = {}
    for step, act in steps.items():
        secs = []
        for i in range(repeats):
            n = len(viewer.redraw_seconds)
            act(i)
            secs.append(np.sum(viewer.redraw_seconds[n:], axis=0))
        times[step] = tuple(float(v) for v in np.median(secs, axis=0))
    return times


def benchmark(repeats: int = 5, seed: int = 0) -> dict:
    """Seconds per interaction of the offset viewer on a 64x64 LR synthetic scene (untrained tiny EDVRs).

    Times the first view (flows and the model's forward pass included) and the median
    redraw after a click, a move of the offset slider, a change of level and of neighbour,
    as (wall, CPU) seconds: the CPU time of this process is what a redraw costs on an idle
    machine (drawing runs on one thread), the wall time what it took here.
    """
    from .alignment import AlignmentConfig
    from .data import SceneConfig, synthetic_clips
    from .models.edvr import build_edvr

    clip = synthetic_clips(1, SceneConfig(height=256, width=256), seed=seed, split="test")[0]
    torch.manual_seed(seed)
    results = {}
    for name, align, groups in (("DCN, G = 2 (N = 9)", AlignmentConfig(kind="dcn"), 2),
                                ("decomposed, G = 1, N = 15",
                                 AlignmentConfig(kind="decomposed", num_offsets=15, modulated=True), 1)):
        model = build_edvr("tiny", alignment=align, deformable_groups=groups, num_frame=3)
        start, cpu = time.perf_counter(), time.process_time()
        viewer = OffsetViewer(model, clip)
        first = (time.perf_counter() - start, time.process_time() - cpu)
        results[name] = {"first view": first, **_time_interactions(viewer, repeats)}
    return results


def format_benchmark(results: dict) -> str:
    """The benchmark as a Markdown table: wall / CPU milliseconds."""
    steps = list(next(iter(results.values())))
    lines = ["| model | " + " | ".join(f"{s} (wall / CPU ms)" for s in steps) + " |",
             "| --- |" + " ---: |" * len(steps)]
    for name, times in results.items():
        cells = [f"{1000 * times[s][0]:.0f} / {1000 * times[s][1]:.0f}" for s in steps]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
