"""Alignment modules: deformable, decomposed, flow-based, image-level and flow-guided (Sec. 3, 4.1, A.3).

Every module aligns a neighbouring frame's feature to the reference frame from a second
feature ``offset_feat`` (in EDVR, computed from both frames by the PCD offset branch),
and all share one interface so that EDVR can plug any of them at every pyramid level:

* ``align(nbr_feat, offset_feat, flow=None, image=None, embed=None, base=None) -> Aligned(feat,
  offset, mask)`` returns the aligned feature ``(B, C, H, W)``, the offsets ``(B, 2*G*N, H, W)``
  (dy, dx layout of ``ops``) and the modulation mask ``(B, G*N, H, W)`` or None; with
  ``base`` (offsets of that shape) the prediction is a residual added to it (EDVR's
  ``residual_offsets``: a coarser pyramid level's offsets, upsampled);
* ``forward(...)`` takes the same arguments and returns only the aligned feature.

``flow`` is an optical flow ``(B, 2, H, W)`` in (u, v) order from the reference to the
neighbour (used by ``FlowGuidedAlignment``, and by ``ImageAlignment`` as a base flow the
prediction refines); ``image`` and ``embed`` are used only by ``ImageAlignment``.

The modules, in the paper's words:

* ``DCNAlignment`` -- deformable alignment (Eq. 1, Eq. 7 with masks): a DCN whose offsets
  and masks come from ``offset_feat``; BasicSR's ``DCNv2Pack`` with the same parameter names.
* ``DecomposedAlignment`` -- the decomposition of Sec. 3.3 generalised by Remark 1:
  N warps per group (any N, no kernel grid) followed by a 1x1 convolution.
* ``FlowAlignment`` -- G = N = 1: one flow warps the features, then a 1x1 convolution;
  the paper's flow-based baseline (Sec. 4.1).
* ``ImageAlignment`` -- the same single flow warps the LR image instead, and the feature is
  extracted from the warped image (A.3, Table 4).
* ``FlowGuidedAlignment`` -- offsets = optical flow + ``max_residue_magnitude * tanh(residue)``,
  as in BasicVSR++ (Chan et al., CVPR 2022), the successor built on this paper's findings.

``AlignmentConfig`` (a frozen dataclass) names one of them; ``build_alignment`` makes it.
``zero_offsets(model)`` holds every alignment module of a model at zero offsets (does the
model use its alignment at all?); ``sample_at(model, flows, level)`` has one of EDVR's PCD levels
sample at a given motion instead of its offsets (a trained model given the exact flow at test,
``diagnostics.offsets_held_at``; the exact flow in place of the offsets early in training,
``TrainConfig.exact_offsets_until``).
Under autocast every module predicts its offsets and masks, and warps, in float32
(``ops.predict_offsets``); only the feature convolutions around them run in half precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ops import (
    BACKENDS,
    DecomposedDeformConv2d,
    DeformConv2d,
    DeformConv2dPack,
    flow_to_offset,
    flow_warp,
    kernel_grid,
    predict_offsets,
)

__all__ = [
    "ALIGNMENT_KINDS",
    "Aligned",
    "AlignmentConfig",
    "DCNAlignment",
    "DecomposedAlignment",
    "FlowAlignment",
    "FlowGuidedAlignment",
    "ImageAlignment",
    "build_alignment",
    "centre_only",
    "pcd_level",
    "sample_at",
    "zero_offsets",
]

ALIGNMENT_KINDS = ("dcn", "decomposed", "flow", "image", "flow_guided")


class Aligned(NamedTuple):
    """What an alignment module returns: the aligned feature and the offsets / mask it used."""

    feat: Tensor  # (B, C, H, W)
    offset: Tensor  # (B, 2*G*N, H, W), dy = offset[:, g*2N + 2n], dx = offset[:, g*2N + 2n + 1]
    mask: Tensor | None  # (B, G*N, H, W) or None


def _require(t: Tensor | None, name: str, module: str, expected: str) -> Tensor:
    if t is None:
        raise ValueError(f"{module} needs {name} {expected}, got None")
    return t


def _plus_base(offset: Tensor, base: Tensor | None) -> Tensor:
    """``offset + base``: the predicted offsets as a residual on top of given base offsets
    (a coarser pyramid level's, upsampled; see ``models.edvr.PCDAlignment``)."""
    if base is None:
        return offset
    if base.shape != offset.shape:
        raise ValueError(f"base offsets must have the offsets' shape {tuple(offset.shape)}, "
                         f"got {tuple(base.shape)}")
    return offset + base.to(offset.dtype)


class _AlignForward:
    """``forward(...)`` is ``align(...).feat``: the aligned feature alone."""

    def forward(self, nbr_feat: Tensor, offset_feat: Tensor, flow: Tensor | None = None,
                image: Tensor | None = None, embed: Callable | None = None,
                base: Tensor | None = None) -> Tensor:
        return self.align(nbr_feat, offset_feat, flow, image, embed, base).feat


class DCNAlignment(_AlignForward, DeformConv2dPack):
    """Deformable alignment (Eq. 1; DCNv2, Eq. 7, when ``modulated``), as BasicSR's ``DCNv2Pack``.

    ``Fhat(p) = sum_k w(p_k) F(p + p_k + dp_k) m_k(p)`` with ``(dp_k, m_k)`` predicted from
    ``offset_feat`` by a zero-initialised ``conv_offset`` (k x k, ``3*G*k*k`` channels split
    ``o1, o2, mask = chunk(3)``, offset = cat(o1, o2), mask = sigmoid; ``2*G*k*k`` offset
    channels for DCNv1). Parameters ``weight``, ``bias``, ``conv_offset.weight``,
    ``conv_offset.bias`` are named and shaped as BasicSR's (EDVR, Wang et al. 2019), so its
    checkpoints load. N = k*k offsets per group.
    """

    def __init__(self, num_feat: int, kernel_size: int = 3, deform_groups: int = 8,
                 modulated: bool = True, backend: str = "decomposed"):
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the feature size, got {kernel_size}")
        super().__init__(num_feat, num_feat, kernel_size, stride=1, padding=kernel_size // 2,
                         deform_groups=deform_groups, modulated=modulated, backend=backend)

    def align(self, nbr_feat: Tensor, offset_feat: Tensor, flow: Tensor | None = None,
              image: Tensor | None = None, embed: Callable | None = None,
              base: Tensor | None = None) -> Aligned:
        offset, mask = self.offsets_and_mask(offset_feat)  # (B, 2*G*k*k, H, W), (B, G*k*k, H, W)
        offset = _plus_base(offset, base)
        return Aligned(DeformConv2d.forward(self, nbr_feat, offset, mask), offset, mask)


class DecomposedAlignment(_AlignForward, DecomposedDeformConv2d):
    """Remark 1: N warps per group, any N, followed by a 1x1 convolution (Eq. 3, Remark 2).

    ``Fhat(p) = sum_n W_n F_g(p + dp_n^g) [m_n^g(p)]`` -- ``G*N`` offsets (no kernel grid),
    each warping its group's ``C/G`` channels; the warps stacked along channels go through
    one 1x1 convolution, ``weight`` ``(C, C, N)``. The offsets (and masks when
    ``modulated``) come from ``offset_feat`` by a zero-initialised 3x3 ``conv_offset``
    split as BasicSR's (``o1, o2, mask = chunk(3)``). At initialisation every offset is
    zero, so the module starts as a 1x1 convolution; the offsets diverge as they learn.

    ``grid=k`` (N = k*k) makes it a k x k DCN written as Eq. 3, parameter for parameter:
    the offsets start on the centred kernel grid (``p + p_k + dp_k``, with ``dp_k`` the
    reported offsets) and ``conv_offset`` is k x k, as ``DCNAlignment``'s. Built after the
    same seed, the two have the same initial weights (the 1x1 weight ``(C, C, N)`` is the
    DCN's ``(C, C, k, k)`` flattened), hence the same outputs up to float rounding (Table 1).
    """

    def __init__(self, num_feat: int, num_offsets: int, deform_groups: int = 1,
                 modulated: bool = False, backend: str = "decomposed", grid: int | None = None):
        if num_offsets < 1:
            raise ValueError(f"num_offsets must be >= 1, got {num_offsets}")
        if grid is not None and (grid < 1 or grid % 2 == 0 or grid * grid != num_offsets):
            raise ValueError(f"grid must be an odd kernel size k with k*k = num_offsets ({num_offsets}), "
                             f"got {grid}")
        super().__init__(num_feat, num_feat, num_offsets, deform_groups, backend=backend)
        self.modulated = modulated
        per_offset = 3 if modulated else 2
        k = 3 if grid is None else grid  # on the grid, DCN's k x k offset branch (same parameters)
        self.conv_offset = nn.Conv2d(num_feat, deform_groups * num_offsets * per_offset, k, 1, k // 2)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)
        self.grid = grid
        grid_offsets = None
        if grid is not None:  # p_k of Sec. 3.1, centred: (-1, -1) ... (1, 1) for k = 3
            centred = kernel_grid(grid) - grid // 2  # (N, 2) as (dy, dx), row-major as DCN's taps
            grid_offsets = centred.flatten().repeat(deform_groups).view(1, -1, 1, 1)  # (1, 2*G*N, 1, 1)
        self.register_buffer("grid_offsets", grid_offsets, persistent=False)  # not in the state dict

    def align(self, nbr_feat: Tensor, offset_feat: Tensor, flow: Tensor | None = None,
              image: Tensor | None = None, embed: Callable | None = None,
              base: Tensor | None = None) -> Aligned:
        offset, mask = predict_offsets(self.conv_offset, offset_feat, self.modulated)  # (B, 2*G*N, H, W)
        offset = _plus_base(offset, base)
        # Eq. 3 samples at p + p_k + dp_k: the grid p_k joins the offsets here and only here, so
        # the offsets reported (and passed up the PCD pyramid) are dp_k, as a DCN's
        sample_at = offset if self.grid is None else offset + self.grid_offsets.to(offset.dtype)
        return Aligned(DecomposedDeformConv2d.forward(self, nbr_feat, sample_at, mask), offset, mask)


class FlowAlignment(DecomposedAlignment):
    """Flow-based feature alignment: G = N = 1, one warp then a 1x1 convolution (Sec. 3.3, 4.1).

    ``Fhat(p) = W F(p + dp(p))`` with one learned flow ``dp`` per pixel, the paper's
    approximation of flow-based alignment (the ``n = 1`` case of Eq. 3).
    """

    def __init__(self, num_feat: int, backend: str = "decomposed"):
        super().__init__(num_feat, num_offsets=1, deform_groups=1, modulated=False, backend=backend)


class ImageAlignment(_AlignForward, nn.Module):
    """Image alignment (A.3): one flow, predicted from features, warps the LR image, not the features.

    ``Fhat = E(warp(I_nbr, dp))``: the flow ``dp`` (G = N = 1, predicted from ``offset_feat``
    by a zero-initialised 3x3 ``conv_offset``, plus ``flow`` when given as a base) is
    resized to the image's resolution (magnitude scaled with it), warps the neighbour's LR
    image ``image`` ``(B, C_img, H_img, W_img)`` bilinearly, and ``embed`` -- the model's own
    feature extractor for this level, a callable image -> ``(B, C, H, W)`` feature -- turns the
    warped image into the aligned feature.

    Design choice: in EDVR every PCD level (and the cascade) keeps its offset branch on the
    unaligned features, but instead of warping the level's features it warps the LR frame
    and re-extracts that level's feature with the shared extractor, so the image- and
    feature-warping variants have the same parameters except this module's; the
    interpolation happens once, on the image (the information loss A.3 is about). The
    cascade passes the L1 flow as ``flow``, so the image is warped once by L1 + refinement.
    ``nbr_feat`` is not used.
    """

    def __init__(self, num_feat: int, backend: str = "decomposed"):
        super().__init__()
        self.backend = backend  # flow_warp has a single implementation; kept for the shared interface
        self.conv_offset = nn.Conv2d(num_feat, 2, 3, 1, 1)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def align(self, nbr_feat: Tensor, offset_feat: Tensor, flow: Tensor | None = None,
              image: Tensor | None = None, embed: Callable | None = None,
              base: Tensor | None = None) -> Aligned:
        image = _require(image, "image", "ImageAlignment", "(B, C_img, H_img, W_img)")
        embed = _require(embed, "embed", "ImageAlignment", "(a callable image -> feature)")
        offset, _ = predict_offsets(self.conv_offset, offset_feat, modulated=False)  # (B, 2, h, w) (dy, dx)
        offset = _plus_base(offset, base)
        if flow is not None:
            offset = offset + flow_to_offset(flow.to(offset.dtype))  # refine a base flow (u, v) -> (dy, dx)
        h, w = offset.shape[-2:]
        hi, wi = image.shape[-2:]
        full = offset
        if (hi, wi) != (h, w):  # a flow at 1/s resolution moves s times as far on the image
            full = F.interpolate(offset, size=(hi, wi), mode="bilinear", align_corners=False)
            full = full * full.new_tensor([hi / h, wi / w]).view(1, 2, 1, 1)
        warped = flow_warp(image, full.flip(1))  # I(p + dp(p)), (B, C_img, H_img, W_img)
        return Aligned(embed(warped), offset, None)


class FlowGuidedAlignment(DCNAlignment):
    """Flow-guided deformable alignment, as BasicVSR++'s second-order grid propagation uses.

    ``dp_k = flow + max_residue_magnitude * tanh(r_k)`` (flipped to (dy, dx), the same for
    every tap and group) with the residue ``r`` and the mask from ``offset_feat``: the DCN
    starts from optical flow and may deviate from it by at most ``max_residue_magnitude``
    pixels per component -- a hard version of the offset-fidelity loss's idea (Sec. 3.4).
    Parameters are those of ``DCNAlignment``; ``offset_kernel`` (default ``kernel_size``) is the
    kernel of the residue-and-mask branch ``conv_offset``, so that a one-tap module (k = 1) can
    see the same 3 x 3 neighbourhood of ``offset_feat`` as the nine-tap one and as the
    decomposition's branch (Remark 1), rather than one pixel.
    """

    def __init__(self, num_feat: int, kernel_size: int = 3, deform_groups: int = 8,
                 modulated: bool = True, max_residue_magnitude: float = 10.0,
                 backend: str = "decomposed", offset_kernel: int | None = None):
        super().__init__(num_feat, kernel_size, deform_groups, modulated, backend)
        self.max_residue_magnitude = max_residue_magnitude
        if offset_kernel is not None and offset_kernel != kernel_size:
            if offset_kernel < 1 or offset_kernel % 2 == 0:
                raise ValueError(f"offset_kernel must be odd and positive, got {offset_kernel}")
            branch = self.conv_offset
            self.conv_offset = nn.Conv2d(branch.in_channels, branch.out_channels, offset_kernel, 1,
                                         offset_kernel // 2)
            nn.init.zeros_(self.conv_offset.weight)  # zero residue and mask 0.5 at first, as the pack's
            nn.init.zeros_(self.conv_offset.bias)

    def align(self, nbr_feat: Tensor, offset_feat: Tensor, flow: Tensor | None = None,
              image: Tensor | None = None, embed: Callable | None = None,
              base: Tensor | None = None) -> Aligned:
        flow = _require(flow, "flow", "FlowGuidedAlignment", "(B, 2, H, W) in (u, v) order")
        if base is not None:
            raise ValueError("FlowGuidedAlignment starts from the optical flow; it takes no base offsets")
        residue, mask = self.offsets_and_mask(offset_feat)  # (B, 2*G*k*k, H, W)
        base = flow_to_offset(flow.to(residue.dtype), self.deform_groups, self.num_offsets)
        offset = base + self.max_residue_magnitude * torch.tanh(residue)
        return Aligned(DeformConv2d.forward(self, nbr_feat, offset, mask), offset, mask)


@dataclass(frozen=True)
class AlignmentConfig:
    """Which alignment module a model uses at every level; ``build_alignment`` makes it.

    kind: one of ``ALIGNMENT_KINDS``: "dcn" (DCNv2 when ``modulated``, else DCNv1),
        "decomposed" (N = ``num_offsets``), "flow" (G = N = 1), "image" (A.3),
        "flow_guided" (BasicVSR++-style, needs optical flow);
    kernel_size: k of "dcn" / "flow_guided" (N = k*k), and of "decomposed" when ``grid``;
    num_offsets: N of "decomposed";
    grid: "decomposed" only: its N = k*k offsets start on the k x k kernel grid and are
        predicted as a DCN's, so that it is the ``kernel_size`` DCN computed as Eq. 3 (Table 1);
    modulated: learn modulation masks (DCNv2, Eq. 7) for "dcn", "decomposed", "flow_guided";
    max_residue_magnitude: bound of "flow_guided"'s deviation from the flow, in pixels;
    offset_kernel: the kernel of "flow_guided"'s residue-and-mask branch (None: k, a DCN's; 3
        gives a one-tap module the 3 x 3 branch of the nine-tap one and of "decomposed"); other
        kinds ignore it, as "dcn" ignores ``num_offsets``;
    backend: ``ops.deform_conv2d`` backend, "decomposed" (default), "naive" or "torchvision"
        ("decomposed" / "naive" only for kinds without a kernel grid).
    The number of deformable groups G comes from the model (EDVR's ``deformable_groups``).
    """

    kind: str = "dcn"
    kernel_size: int = 3
    num_offsets: int = 1
    modulated: bool = True
    max_residue_magnitude: float = 10.0
    backend: str = "decomposed"
    grid: bool = False
    offset_kernel: int | None = None

    @property
    def offsets_per_group(self) -> int:
        """N, the offsets per deformable group: ``k*k`` for "dcn" and "flow_guided" (Eq. 1: one
        per kernel tap), ``num_offsets`` for "decomposed" (Remark 1), 1 for "flow" and "image"
        (G = N = 1, Sec. 4.1)."""
        if self.kind in ("dcn", "flow_guided"):
            return self.kernel_size ** 2
        return self.num_offsets if self.kind == "decomposed" else 1

    @property
    def has_masks(self) -> bool:
        """Whether the module predicts modulation masks (DCNv2, Eq. 7): ``modulated`` kinds with
        an offset branch of BasicSR's ``o1, o2, mask`` split; "flow" and "image" have none."""
        return self.modulated and self.kind in ("dcn", "decomposed", "flow_guided")

    @property
    def kernel_grid_size(self) -> int | None:
        """k when the offsets start on the k x k kernel grid ``p_k`` (Eq. 1: the module samples at
        ``p + p_k + dp_k``): "dcn", "flow_guided" and "decomposed" with ``grid``; else None
        (samples at ``p + dp_n``, Remark 1)."""
        on_grid = self.kind in ("dcn", "flow_guided") or (self.kind == "decomposed" and self.grid)
        return self.kernel_size if on_grid else None

    def num_groups(self, deformable_groups: int) -> int:
        """G, the deformable groups the module uses in a model of ``deformable_groups``: the
        model's for "dcn", "decomposed", "flow_guided"; 1 for "flow" and "image" (G = N = 1)."""
        return deformable_groups if self.kind in ("dcn", "decomposed", "flow_guided") else 1

    def channel_split(self, deformable_groups: int) -> tuple[int, int]:
        """``(offset channels 2*G*N, mask channels G*N or 0)`` of the offset branch ``conv_offset``,
        offsets first (BasicSR's ``o1, o2, mask = chunk(3)``)."""
        gn = self.num_groups(deformable_groups) * self.offsets_per_group
        return 2 * gn, gn if self.has_masks else 0

    def __post_init__(self):
        if self.grid and (self.kind != "decomposed" or self.num_offsets != self.kernel_size ** 2):
            raise ValueError(f"grid=True is for kind='decomposed' with num_offsets = kernel_size**2, "
                             f"got kind={self.kind!r}, num_offsets={self.num_offsets}, "
                             f"kernel_size={self.kernel_size}")
        if self.kind not in ALIGNMENT_KINDS:
            raise ValueError(f"kind must be one of {ALIGNMENT_KINDS}, got {self.kind!r}")
        if self.offset_kernel is not None and (self.offset_kernel < 1 or self.offset_kernel % 2 == 0):
            raise ValueError(f"offset_kernel must be an odd kernel size, got {self.offset_kernel}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.kind in ("decomposed", "flow") and self.backend == "torchvision":
            raise ValueError(f"kind={self.kind!r} has no kernel grid; torchvision's deform_conv2d "
                             "cannot run it, use backend='decomposed' or 'naive'")


def build_alignment(config: AlignmentConfig | str, num_feat: int, deform_groups: int = 1) -> nn.Module:
    """Make the alignment module ``config`` names for ``num_feat`` channels and G groups; its
    ``channel_split`` is the config's (offset and mask channels of ``conv_offset``)."""
    c = AlignmentConfig(kind=config) if isinstance(config, str) else config
    if c.kind == "dcn":
        module = DCNAlignment(num_feat, c.kernel_size, deform_groups, c.modulated, c.backend)
    elif c.kind == "decomposed":
        module = DecomposedAlignment(num_feat, c.num_offsets, deform_groups, c.modulated, c.backend,
                                     grid=c.kernel_size if c.grid else None)
    elif c.kind == "flow":
        module = FlowAlignment(num_feat, c.backend)
    elif c.kind == "image":
        module = ImageAlignment(num_feat, c.backend)
    else:
        module = FlowGuidedAlignment(num_feat, c.kernel_size, deform_groups, c.modulated,
                                     c.max_residue_magnitude, c.backend, c.offset_kernel)
    module.channel_split = c.channel_split(deform_groups)
    return module


def _offset_branches(model: nn.Module) -> list[tuple[nn.Conv2d, int]]:
    """Every alignment module's offset branch ``conv_offset`` and how many of its leading output
    channels are offsets: the first of its ``channel_split`` (``build_alignment``; the rest are
    masks), or all of them in a module made otherwise; a model whose offsets come from elsewhere
    names its branches itself, ``model.offset_branches()`` (``models.FlowNet``: the last
    convolution of every SPyNet level)."""
    if callable(getattr(model, "offset_branches", None)):
        return model.offset_branches()
    out = []
    for m in model.modules():
        conv = getattr(m, "conv_offset", None)
        if not (isinstance(conv, nn.Conv2d) and hasattr(m, "align")):
            continue
        if isinstance(m, FlowGuidedAlignment):
            raise ValueError("flow-guided offsets are the flow plus a residue: zeroing the "
                             "branch does not zero the offsets")
        out.append((conv, getattr(m, "channel_split", (conv.out_channels,))[0]))
    if not out:
        raise ValueError("the model has no alignment module with an offset branch (conv_offset)")
    return out


def centre_only(model: nn.Module, lq: Tensor, centre: int, **inputs: Tensor) -> Tensor:
    """The model's output given the centre frame ``centre`` of ``lq`` (``(B, T, 3, h, w)``) in place
    of every neighbour, and zero motion for any flows it takes (``inputs``, e.g. ``flows=``):
    nothing to align and nothing new to add. The model's output minus this is what its
    neighbours' content adds to it (the measures' ``psnr_gain_over_reference_only``)."""
    still = lq[:, centre:centre + 1].expand_as(lq).contiguous()  # the centre frame T times
    return model(still, **{k: torch.zeros_like(v) for k, v in inputs.items()})


@contextlib.contextmanager
def zero_offsets(model: nn.Module, frames=None):
    """Inside the block, every alignment module of ``model`` samples its input at zero offsets.

    The offset rows of each offset branch's weight and bias (``conv_offset``, or the model's
    ``offset_branches()``) are set to zero and restored, bit for bit, on leaving; modulation
    masks are kept. The model then fuses unaligned neighbours (a DCN becomes a plain
    convolution; a flow network warps by zero flow): comparing its PSNR with the trained
    model's says whether alignment is used at all.

    ``frames`` (EDVR only): the input frames (indices) whose alignment is held at zero, the
    others aligned as trained. EDVR aligns every frame with the same modules, the reference too
    (frame 0 first, at every level and the cascade): ``frames`` = the neighbours holds their
    offsets at zero and leaves the reference's own alignment as trained (nothing tells the model
    that it should be the identity, and it need not be).
    """
    branches = _offset_branches(model)
    if frames is None:
        with _rows_zeroed(branches):
            yield model
        return
    if getattr(model, "pcd_align", None) is None:
        raise ValueError(f"frames needs EDVR's PCD alignment (model.pcd_align); "
                         f"{type(model).__name__} has none")
    t = model.num_frame
    frames = {int(f) for f in frames}
    if not frames <= set(range(t)):
        raise ValueError(f"frames must be indices in 0..{t - 1}, got {sorted(frames)}")
    owners = {id(m.conv_offset): m for m in model.pcd_align.modules() if hasattr(m, "align")
              and isinstance(getattr(m, "conv_offset", None), nn.Conv2d)}
    wrapped = []
    for conv, rows in branches:
        module = owners.get(id(conv))
        if module is None:
            continue
        bound, calls = module.align, []

        def align(*args, _bound=bound, _calls=calls, _branch=((conv, rows),), **kwargs):
            frame = len(_calls) % t
            _calls.append(frame)
            if frame not in frames:
                return _bound(*args, **kwargs)
            with _rows_zeroed(_branch):
                return _bound(*args, **kwargs)

        module.align = align  # an instance attribute shadows the method for this block only
        wrapped.append(module)
    try:
        yield model
    finally:
        for module in wrapped:
            del module.align


def pcd_level(model: nn.Module, level: str) -> nn.Module:
    """The alignment module of EDVR's PCD ``level``: ``"l1"``, ``"l2"``, ``"l3"`` or ``"cascade"``."""
    pcd = getattr(model, "pcd_align", None)
    if pcd is None:
        raise ValueError(f"needs EDVR's PCD alignment (model.pcd_align); {type(model).__name__} has none")
    levels = (*pcd.dcn_pack.keys(), "cascade")
    if level not in levels:
        raise ValueError(f"level must be one of {levels}, got {level!r}")
    return pcd.cas_dcnpack if level == "cascade" else pcd.dcn_pack[level]


SAMPLE_REPORTS = ("given", "predicted")


@contextlib.contextmanager
def sample_at(model: nn.Module, flows, level: str = "l1", reports: str = "given"):
    """Inside the block, EDVR's PCD ``level`` (``"l1"``, ``"l2"``, ``"l3"`` or ``"cascade"``)
    samples each input frame at the given motion instead of the offsets it predicts.

    ``flows``: one ``(B, 2, h, w)`` tensor per input frame, in the order EDVR aligns them (frame
    0 first; the reference frame's is its motion to itself, zero), as ``(u, v)`` at that level's
    size and in its pixels; every one of a group's N offsets is set to it. The module still runs
    its offset branch (its masks, if any, are kept). ``reports`` says which offsets the level
    then hands on (``aux["offsets"]``, and the base the next finer level builds on with residual
    offsets): ``"given"`` the motion it sampled at (a model held at a flow, as if it had predicted
    it), ``"predicted"`` its own prediction, which then reaches no output but the losses on
    ``aux`` (a teacher: the warping terms train the offsets while the fusion sees neighbours
    aligned by the flow). One module of the decomposition (no kernel grid: the alignment kinds
    ``"decomposed"`` and ``"flow"``); the block may be nested to hold several levels. Yields the
    list of calls so far (one per input frame and forward pass).
    """
    module = pcd_level(model, level)
    if not isinstance(module, DecomposedAlignment) or module.grid is not None:
        raise ValueError(f"sample_at samples with offsets of its own only in the decomposition without "
                         f"a kernel grid (alignment kinds 'decomposed', 'flow'); {level} is "
                         f"{type(module).__name__}")
    if reports not in SAMPLE_REPORTS:
        raise ValueError(f"reports must be one of {SAMPLE_REPORTS}, got {reports!r}")
    flows = list(flows)
    if not flows:
        raise ValueError("flows must hold one (B, 2, h, w) motion per input frame, got none")
    bound = module.align
    calls: list[int] = []

    def align(nbr_feat, offset_feat, flow=None, image=None, embed=None, base=None):
        rec = bound(nbr_feat, offset_feat, flow, image, embed, base)
        given = flows[len(calls) % len(flows)]
        calls.append(len(calls))
        if given.shape[-3] != 2 or given.shape[-2:] != rec.offset.shape[-2:]:
            raise ValueError(f"each flow must be (B, 2, h, w) at {level}'s size "
                             f"{tuple(rec.offset.shape[-2:])}, got {tuple(given.shape)}")
        offset = given.flip(-3).to(rec.offset).repeat(1, rec.offset.shape[1] // 2, 1, 1)  # (dy, dx) x G*N
        feat = DecomposedDeformConv2d.forward(module, nbr_feat, offset, rec.mask)
        return Aligned(feat, offset if reports == "given" else rec.offset, rec.mask)

    module.align = align  # an instance attribute shadows the method for this block only
    try:
        yield calls
    finally:
        del module.align


@contextlib.contextmanager
def _rows_zeroed(branches):
    """The offset rows of each ``(conv, rows)`` of ``branches`` at zero inside, restored after."""
    saved = []
    with torch.no_grad():
        for conv, rows in branches:
            params = [p for p in (conv.weight, conv.bias) if p is not None]
            saved += [(p, p[:rows].clone()) for p in params]
            for p in params:
                p[:rows] = 0
    try:
        yield
    finally:
        with torch.no_grad():
            for p, rows in saved:
                p[: len(rows)] = rows
