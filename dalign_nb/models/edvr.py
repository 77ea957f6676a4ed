"""EDVR with pluggable alignment: PCD alignment (3 pyramid levels + cascade) and TSA fusion (Sec. 4).

EDVR (Wang et al., "EDVR: Video Restoration with Enhanced Deformable Convolutional
Networks", CVPRW 2019) is the model the paper analyses. Module and parameter names and
shapes are those of BasicSR's ``basicsr/archs/edvr_arch.py`` (``EDVR``, ``PCDAlignment``,
``TSAFusion``, ``PredeblurModule``; BasicSR by X. Wang, K. Chan et al., Apache-2.0), so
with the default DCNv2 alignment a BasicSR checkpoint loads with ``strict=True`` and gives
the same output. The code is written here; only the names follow BasicSR.

What is ours: the alignment at every PCD level (``pcd_align.dcn_pack.l3/l2/l1`` and
``pcd_align.cas_dcnpack``; the names stay BasicSR's whatever the kind) is any module of
``dalign_nb.alignment``, and ``model(x, return_aux=True)`` returns what the analyses of
Sec. 4 need. ``aux`` is a dict:

* ``aux["offsets"][level]``: ``(B, T, 2*G*N, h_l, w_l)`` offsets in the (dy, dx) layout of
  ``ops``, stacked over the T input frames (the centre frame aligned to itself included);
* ``aux["masks"][level]``: ``(B, T, G*N, h_l, w_l)`` modulation masks, or None (no masks);
* ``aux["aligned"][level]``: ``(B, T, C, h_l, w_l)`` the alignment module's output at that
  level (before the PCD's ``feat_conv`` / activation);
* ``aux["aligned_feat"]``: ``(B, T, C, h, w)`` the PCD output, the features TSA fuses;

with ``level`` in ``LEVELS = ("l3", "l2", "l1", "cascade")`` (coarse to fine; ``l1`` and
``cascade`` at the LR size ``h x w``, ``l2`` at ``h/2``, ``l3`` at ``h/4``). The offsets of
``l3``-``l1`` are relative to the unaligned neighbour (flow-like, Sec. 4.1); the cascade's
refine the already aligned L1 feature.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..alignment import Aligned, AlignmentConfig, build_alignment
from ..ops import BACKENDS, DecomposedDeformConv2d, DeformConv2d, group_warp, local_correlation

__all__ = [
    "EDVR",
    "EDVRConfig",
    "LEVELS",
    "PCDAlignment",
    "PRESETS",
    "PredeblurModule",
    "ResidualBlockNoBN",
    "TSAFusion",
    "build_edvr",
    "edvr_config",
    "flow_pyramid",
    "load_basicsr_checkpoint",
    "fusion_parameters",
    "read_basicsr_state_dict",
    "set_fusion_only",
]

LEVELS = ("l3", "l2", "l1", "cascade")


def made(stream: int | None, name: str, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` drawing its random initial weights from its own stream, seeded by
    ``(stream, name)`` (``EDVRConfig.seed_per_module``); with ``stream`` None, from the global
    stream as usual. Two models built from one seed then share the initial weights of every
    module they share, whatever the other modules draw (fig9's N = 1 and N = 15, table4's
    feature and image warping differ only in their alignment modules)."""
    if stream is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed((stream * 1_000_003 + zlib.crc32(name.encode())) % 2 ** 63)
        return build()


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.1)


def _up2(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def _conv(c_in: int, c_out: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride, k // 2)


class ResidualBlockNoBN(nn.Module):
    """``x + conv2(relu(conv1(x)))``; BasicSR's init: Kaiming normal times 0.1, zero bias."""

    def __init__(self, num_feat: int = 64):
        super().__init__()
        self.conv1, self.conv2 = _conv(num_feat, num_feat), _conv(num_feat, num_feat)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def _blocks(num_block: int, num_feat: int) -> nn.Sequential:
    return nn.Sequential(*[ResidualBlockNoBN(num_feat) for _ in range(num_block)])


def flow_pyramid(flows: Tensor) -> list[Tensor]:
    """Flows ``(..., 2, h, w)`` at L1 as ``[L1, L2, L3]``: 2x2 average pooling, magnitude halved per level.

    A displacement of ``d`` pixels at L1 is ``d / 2`` pixels at L2 (half the resolution).
    """
    lead = flows.shape[:-3]
    f = flows.reshape(-1, *flows.shape[-3:])  # (M, 2, h, w)
    levels = [f]
    for _ in range(2):
        levels.append(F.avg_pool2d(levels[-1], 2) * 0.5)
    return [lvl.view(*lead, *lvl.shape[-3:]) for lvl in levels]


class PCDAlignment(nn.Module):
    """Pyramid, Cascading and Deformable alignment (EDVR), the alignment module pluggable.

    At level ``l`` (L3 coarse to L1 fine) an offset feature is computed from the neighbour
    and reference features (and the 2x upsampled offset feature of level ``l+1``, its
    magnitude doubled); ``dcn_pack[l]`` aligns the neighbour feature with it; the result
    is merged with the upsampled aligned feature of level ``l+1`` by ``feat_conv[l]``. A
    cascading ``cas_dcnpack`` then refines the L1 result against the reference.

    With ``residual_offsets`` (ours, not EDVR's) level ``l`` predicts a residual on top of
    ``2 * up2(offsets of level l+1)``: the motion found at 1/4 resolution, where a few
    pixels are less than one, reaches L1 without being re-learned there.

    With ``warp_then_estimate`` as well (ours, not EDVR's) the offset branch of level ``l``
    sees the neighbour already warped by that base, ``cat(warp(nbr_l, base_l), ref_l)``
    (each group's channels by the group's mean base offset, ``ops.group_warp``), as the
    coarse-to-fine flow networks SPyNet (Ranjan & Black, CVPR 2017) and PWC-Net (Sun et al.,
    CVPR 2018) estimate only the residual motion between a warped neighbour and the
    reference: what is left lies within the branch's small receptive field. The alignment
    still samples the *unwarped* neighbour at ``base_l + prediction``, so the offsets keep
    their meaning (relative to the neighbour, flow-like) and nothing is interpolated twice.

    With ``cost_volume`` = d > 0 (ours, not EDVR's) every level's offset branch also takes the
    local correlation of the reference with what it compares it to (``ops.local_correlation``,
    every displacement up to d pixels of that level, as FlowNetC and PWC-Net feed their flow
    estimators): the motion is then read from explicit matches, not inferred by convolutions
    from two stacked feature maps. At L3 (1/4 of the LR size) d = 3 spans 12 LR pixels.
    """

    def __init__(self, num_feat: int = 64, deformable_groups: int = 8,
                 alignment: AlignmentConfig | str = "dcn", residual_offsets: bool = False,
                 warp_then_estimate: bool = False, stream: int | None = None, cost_volume: int = 0):
        super().__init__()
        if warp_then_estimate and not residual_offsets:
            raise ValueError("warp_then_estimate warps by the coarser level's offsets passed up as a "
                             "base: it needs residual_offsets=True")
        self.residual_offsets, self.warp_then_estimate = residual_offsets, warp_then_estimate
        self.cost_volume = cost_volume
        matches = (2 * cost_volume + 1) ** 2 if cost_volume else 0  # the cost volume's channels
        self.alignment = AlignmentConfig(kind=alignment) if isinstance(alignment, str) else alignment
        self.offset_conv1, self.offset_conv2 = nn.ModuleDict(), nn.ModuleDict()
        self.offset_conv3, self.dcn_pack, self.feat_conv = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        c, g = num_feat, deformable_groups

        def aligner():
            return build_alignment(self.alignment, c, g)

        for i in (3, 2, 1):
            level = f"l{i}"
            self.offset_conv1[level] = made(stream, f"offset_conv1.{level}",
                                            lambda: _conv(c * 2 + matches, c))
            c_in = c if i == 3 else c * 2  # finer levels also take the coarser offset feature
            self.offset_conv2[level] = made(stream, f"offset_conv2.{level}", lambda c_in=c_in: _conv(c_in, c))
            if i < 3:
                self.offset_conv3[level] = made(stream, f"offset_conv3.{level}", lambda: _conv(c, c))
            self.dcn_pack[level] = made(stream, f"dcn_pack.{level}", aligner)
            if i < 3:
                self.feat_conv[level] = made(stream, f"feat_conv.{level}", lambda: _conv(c * 2, c))
        self.cas_offset_conv1 = made(stream, "cas_offset_conv1", lambda: _conv(c * 2, c))
        self.cas_offset_conv2 = made(stream, "cas_offset_conv2", lambda: _conv(c, c))
        self.cas_dcnpack = made(stream, "cas_dcnpack", aligner)

    def _cascade_flow(self, l1: Aligned) -> Tensor | None:
        if self.alignment.kind == "flow_guided":  # the L1 feature is already aligned: no base flow
            return torch.zeros_like(l1.offset[:, :2])
        if self.alignment.kind == "image":  # warp the LR image once, by the L1 flow plus a refinement
            return l1.offset.flip(1)  # (dy, dx) -> (u, v)
        return None

    def forward(self, nbr_feat_l: list[Tensor], ref_feat_l: list[Tensor],
                flow_l: list[Tensor | None] | None = None, image: Tensor | None = None,
                extract: Callable[[Tensor], list[Tensor]] | None = None) -> tuple[Tensor, dict[str, Aligned]]:
        """Align ``nbr_feat_l`` = [L1, L2, L3] (each (B, C, h_l, w_l)) to ``ref_feat_l``.

        flow_l: [L1, L2, L3] flows (u, v) for flow-guided alignment; image / extract: the LR
        neighbour and the feature extractor (image -> [L1, L2, L3]) for image alignment.
        Returns the aligned feature (B, C, h, w) and each level's ``Aligned`` record.
        """
        flow_l = flow_l or [None, None, None]
        records: dict[str, Aligned] = {}
        up_offset = up_feat = base = None
        for i in (3, 2, 1):
            level, nbr, ref = f"l{i}", nbr_feat_l[i - 1], ref_feat_l[i - 1]
            seen = nbr  # what the offset branch compares with the reference
            if self.warp_then_estimate and base is not None:  # estimate only the residual motion
                seen = group_warp(nbr, base, self.alignment.offsets_per_group).to(nbr.dtype)
            branch_in = [seen, ref]
            if self.cost_volume:
                branch_in.append(_lrelu(local_correlation(ref, seen, self.cost_volume)))
            offset = _lrelu(self.offset_conv1[level](torch.cat(branch_in, dim=1)))  # (B, C, h_l, w_l)
            if i == 3:
                offset = _lrelu(self.offset_conv2[level](offset))
            else:
                offset = _lrelu(self.offset_conv2[level](torch.cat([offset, up_offset], dim=1)))
                offset = _lrelu(self.offset_conv3[level](offset))
            rec = self.dcn_pack[level].align(nbr, offset, flow_l[i - 1], image, _level(extract, i - 1),
                                             base=base)
            records[level] = rec
            feat = rec.feat if i == 3 else self.feat_conv[level](torch.cat([rec.feat, up_feat], dim=1))
            if i > 1:
                feat = _lrelu(feat)
                up_offset, up_feat = _up2(offset) * 2, _up2(feat)  # offset feature x2 with the resolution
                if self.residual_offsets:  # offsets in pixels double with the resolution
                    base = _up2(rec.offset) * 2
        offset = torch.cat([feat, ref_feat_l[0]], dim=1)
        offset = _lrelu(self.cas_offset_conv2(_lrelu(self.cas_offset_conv1(offset))))
        rec = self.cas_dcnpack.align(feat, offset, self._cascade_flow(records["l1"]), image,
                                     _level(extract, 0))
        records["cascade"] = rec
        return _lrelu(rec.feat), records


def _level(extract, index: int):
    return None if extract is None else (lambda img: extract(img)[index])


class TSAFusion(nn.Module):
    """Temporal and Spatial Attention fusion (EDVR).

    Temporal: ``h_t(p) = sigmoid(<theta(F_t)(p), phi(F_ref)(p)>)`` weighs every aligned frame
    by its similarity to the reference; the weighted frames are fused by a 1x1 conv.
    Spatial: a two-level pyramid of attention (max + average pooling) modulates the fused
    feature, ``F = F_fused * 2 sigmoid(a) + a_add`` (the 2 makes the scale ~1 at init).
    """

    def __init__(self, num_feat: int = 64, num_frame: int = 5, center_frame_idx: int = 2):
        super().__init__()
        self.center_frame_idx = center_frame_idx
        c = num_feat
        self.temporal_attn1, self.temporal_attn2 = _conv(c, c), _conv(c, c)
        self.feat_fusion = _conv(num_frame * c, c, 1)
        self.spatial_attn1 = _conv(num_frame * c, c, 1)
        self.spatial_attn2 = _conv(c * 2, c, 1)
        self.spatial_attn3, self.spatial_attn4, self.spatial_attn5 = _conv(c, c), _conv(c, c, 1), _conv(c, c)
        self.spatial_attn_l1, self.spatial_attn_l2, self.spatial_attn_l3 = (
            _conv(c, c, 1), _conv(c * 2, c), _conv(c, c))
        self.spatial_attn_add1, self.spatial_attn_add2 = _conv(c, c, 1), _conv(c, c, 1)

    @staticmethod
    def _pool(x: Tensor) -> Tensor:
        """Max and average 3x3 / stride-2 pooling, concatenated: (B, C, H, W) -> (B, 2C, H/2, W/2)."""
        return torch.cat([F.max_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 3, 2, 1)], dim=1)

    def forward(self, aligned_feat: Tensor) -> Tensor:
        b, t, c, h, w = aligned_feat.shape
        emb_ref = self.temporal_attn1(aligned_feat[:, self.center_frame_idx])  # (B, C, H, W)
        emb = self.temporal_attn2(aligned_feat.flatten(0, 1)).view(b, t, c, h, w)
        corr = torch.sigmoid((emb * emb_ref[:, None]).sum(2))  # (B, T, H, W)
        weighted = (aligned_feat * corr[:, :, None]).view(b, t * c, h, w)
        feat = _lrelu(self.feat_fusion(weighted))  # (B, C, H, W)

        attn = _lrelu(self.spatial_attn1(weighted))
        attn = _lrelu(self.spatial_attn2(self._pool(attn)))  # (B, C, H/2, W/2)
        attn_level = _lrelu(self.spatial_attn_l1(attn))
        attn_level = _lrelu(self.spatial_attn_l2(self._pool(attn_level)))  # (B, C, H/4, W/4)
        attn_level = _up2(_lrelu(self.spatial_attn_l3(attn_level)))
        attn = _lrelu(self.spatial_attn3(attn)) + attn_level
        attn = _up2(_lrelu(self.spatial_attn4(attn)))  # (B, C, H, W)
        attn = self.spatial_attn5(attn)
        attn_add = self.spatial_attn_add2(_lrelu(self.spatial_attn_add1(attn)))
        return feat * torch.sigmoid(attn) * 2 + attn_add


class PredeblurModule(nn.Module):
    """EDVR's pre-deblurring feature extractor (deblurring track; ``hr_in`` downsamples x4)."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, hr_in: bool = False):
        super().__init__()
        self.hr_in = hr_in
        self.conv_first = _conv(num_in_ch, num_feat)
        if hr_in:
            self.stride_conv_hr1 = _conv(num_feat, num_feat, 3, 2)
            self.stride_conv_hr2 = _conv(num_feat, num_feat, 3, 2)
        self.stride_conv_l2 = _conv(num_feat, num_feat, 3, 2)
        self.stride_conv_l3 = _conv(num_feat, num_feat, 3, 2)
        self.resblock_l3 = ResidualBlockNoBN(num_feat)
        self.resblock_l2_1 = ResidualBlockNoBN(num_feat)
        self.resblock_l2_2 = ResidualBlockNoBN(num_feat)
        self.resblock_l1 = nn.ModuleList([ResidualBlockNoBN(num_feat) for _ in range(5)])

    def forward(self, x: Tensor) -> Tensor:
        l1 = _lrelu(self.conv_first(x))
        if self.hr_in:
            l1 = _lrelu(self.stride_conv_hr2(_lrelu(self.stride_conv_hr1(l1))))  # H -> H/4
        l2 = _lrelu(self.stride_conv_l2(l1))
        l3 = _lrelu(self.stride_conv_l3(l2))
        l3 = _up2(self.resblock_l3(l3))
        l2 = _up2(self.resblock_l2_2(self.resblock_l2_1(l2) + l3))
        for block in self.resblock_l1[:2]:
            l1 = block(l1)
        l1 = l1 + l2
        for block in self.resblock_l1[2:]:
            l1 = block(l1)
        return l1


@dataclass(frozen=True)
class EDVRConfig:
    """EDVR's hyper-parameters under BasicSR's names, plus the alignment at every PCD level.

    ``zero_init_output`` is ours, not BasicSR's: start ``conv_last`` at zero, so that the
    untrained model is exactly EDVR's bilinear base. With BasicSR's random initialisation
    the first steps spend themselves silencing a noisy residual, and a small model can sit
    at the bilinear output for hundreds of iterations (all that the quick profiles have).

    ``residual_offsets`` is ours too (EDVR: False): each PCD level's offsets are the coarser
    level's offsets, upsampled 2x and doubled, plus what the level predicts, as coarse-to-fine
    optical-flow networks (SPyNet, PWC-Net) build their flows. In EDVR a coarser level
    passes only its offset *feature* upwards, so a finer level must re-learn the motion; at
    small scale that is what keeps offsets near zero (see ``config.align``'s description).

    ``warp_then_estimate`` is ours too (EDVR: False; needs ``residual_offsets``): each finer
    level's offset branch sees the neighbour warped by the coarser level's offsets, as
    SPyNet and PWC-Net estimate residual flows (see ``PCDAlignment``). It adds no parameter.

    ``cost_volume`` is ours too (EDVR: 0): every PCD level's offset branch also takes the local
    correlation of the reference and neighbour features for every displacement up to this many
    pixels of the level (FlowNetC, PWC-Net; see ``PCDAlignment``); ``(2d+1)^2`` input channels
    more in each ``offset_conv1``.

    ``seed_per_module`` (default False: one global stream, as BasicSR): each module draws its
    initial weights from its own random stream, seeded by the global seed (``torch.manual_seed``
    before building) and the module's name (``made``). Models of one seed then start from the
    same weights in every module they share, so that a comparison of two alignments differs in
    the alignment alone, not in the TSA or reconstruction weights that a larger alignment
    module would otherwise shift.
    """

    num_in_ch: int = 3
    num_out_ch: int = 3
    num_feat: int = 64
    num_frame: int = 5
    deformable_groups: int = 8  # G
    num_extract_block: int = 5
    num_reconstruct_block: int = 10
    center_frame_idx: int | None = None  # None: num_frame // 2
    hr_in: bool = False
    with_predeblur: bool = False
    with_tsa: bool = True
    alignment: AlignmentConfig = AlignmentConfig()
    zero_init_output: bool = False
    residual_offsets: bool = False
    warp_then_estimate: bool = False
    seed_per_module: bool = False
    cost_volume: int = 0

    def __post_init__(self):
        if isinstance(self.alignment, str):
            object.__setattr__(self, "alignment", AlignmentConfig(kind=self.alignment))
        if self.warp_then_estimate and self.alignment.kind == "flow_guided":
            raise ValueError("warp_then_estimate does not apply to flow_guided alignment, whose offsets "
                             "are the optical flow plus a bounded residue at every level")
        if self.residual_offsets and self.alignment.kind == "flow_guided":
            raise ValueError("residual_offsets does not apply to flow_guided alignment, whose offsets "
                             "are the optical flow plus a bounded residue at every level")
        if self.warp_then_estimate and not self.residual_offsets:
            raise ValueError("warp_then_estimate warps by the coarser level's offsets passed up as a "
                             "base: it needs residual_offsets=True")
        if not isinstance(self.cost_volume, int) or self.cost_volume < 0:
            raise ValueError(f"cost_volume (the largest displacement correlated, in pixels of each PCD "
                             f"level) must be an int >= 0, got {self.cost_volume!r}")

    @property
    def takes_flows(self) -> bool:
        """Whether the model's forward needs optical flows (``flows=``): flow-guided alignment.

        The one rule for it: the trainer and ``evaluate`` pass flows exactly when this is True.
        """
        return self.alignment.kind == "flow_guided"

    @property
    def offsets_per_group(self) -> int:
        """N, the offsets per deformable group (``AlignmentConfig.offsets_per_group``); every
        model config says it so (``TDANConfig``, ``FlowNetConfig``)."""
        return self.alignment.offsets_per_group

    @property
    def has_masks(self) -> bool:
        """Whether its alignment predicts modulation masks (DCNv2, Eq. 7)."""
        return self.alignment.has_masks

    @property
    def offset_levels(self) -> tuple[str, ...]:
        """The keys of ``aux["offsets"]``: the PCD levels, coarse to fine, and the cascade."""
        return LEVELS

    @property
    def cascade_is_residual(self) -> bool:
        """Whether ``aux["offsets"]["cascade"]`` is the motion left after L1 (the cascade aligns
        the already aligned L1 feature) rather than the whole motion: every alignment but
        "image", whose cascade warps the LR frame once by L1's flow plus its refinement
        (``PCDAlignment._cascade_flow``)."""
        return self.alignment.kind != "image"


# EDVR-M / EDVR-L are the official sizes (BasicSR's EDVR_M / EDVR_L REDS configs);
# "small" and "tiny" are ours, for CPU training and for tests.
PRESETS: dict[str, EDVRConfig] = {
    "edvr-m": EDVRConfig(num_feat=64, num_extract_block=5, num_reconstruct_block=10, deformable_groups=8),
    "edvr-l": EDVRConfig(num_feat=128, num_extract_block=5, num_reconstruct_block=40, deformable_groups=8),
    "small": EDVRConfig(num_feat=32, num_extract_block=2, num_reconstruct_block=4, deformable_groups=4),
    "tiny": EDVRConfig(num_feat=16, num_extract_block=1, num_reconstruct_block=1, deformable_groups=2),
}


def replace_preset(presets: dict, preset: str, **changes):
    """``presets[preset]`` (a config) with ``changes`` applied (``dataclasses.replace``)."""
    if preset not in presets:
        raise ValueError(f"preset must be one of {tuple(presets)}, got {preset!r}")
    return dataclasses.replace(presets[preset], **changes)


def config_kwargs(config) -> dict:
    """A config's fields as the keyword arguments of its model (``from_config``)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def edvr_config(preset: str = "edvr-m", **changes) -> EDVRConfig:
    """A preset's ``EDVRConfig`` with ``changes`` applied (``dataclasses.replace``)."""
    return replace_preset(PRESETS, preset, **changes)


def build_edvr(preset: str = "edvr-m", **changes) -> EDVR:
    """``EDVR.from_config(edvr_config(preset, **changes))``."""
    return EDVR.from_config(edvr_config(preset, **changes))


class EDVR(nn.Module):
    """EDVR for x4 video super-resolution: x ``(B, T, C, h, w)`` in [0, 1] -> ``(B, C, 4h, 4w)``.

    Arguments are BasicSR's (see ``EDVRConfig``) plus ``alignment`` (an ``AlignmentConfig``
    or a kind name), used at the three PCD levels and the cascade. ``forward(x, flows=None,
    return_aux=False)``: ``flows`` ``(B, T, 2, h, w)`` are the optical flows (u, v) from the
    centre frame to each frame, needed by the "flow_guided" alignment only; with
    ``return_aux`` it returns ``(out, aux)`` as the module docstring describes.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_frame: int = 5,
                 deformable_groups: int = 8, num_extract_block: int = 5, num_reconstruct_block: int = 10,
                 center_frame_idx: int | None = None, hr_in: bool = False, with_predeblur: bool = False,
                 with_tsa: bool = True, alignment: AlignmentConfig | str = "dcn",
                 zero_init_output: bool = False, residual_offsets: bool = False,
                 warp_then_estimate: bool = False, seed_per_module: bool = False, cost_volume: int = 0):
        super().__init__()
        self.config = EDVRConfig(
            num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_frame=num_frame,
            deformable_groups=deformable_groups, num_extract_block=num_extract_block,
            num_reconstruct_block=num_reconstruct_block, center_frame_idx=center_frame_idx, hr_in=hr_in,
            with_predeblur=with_predeblur, with_tsa=with_tsa, alignment=alignment,
            zero_init_output=zero_init_output, residual_offsets=residual_offsets,
            warp_then_estimate=warp_then_estimate, seed_per_module=seed_per_module,
            cost_volume=cost_volume)
        if hr_in and not with_predeblur:
            raise ValueError("hr_in=True needs with_predeblur=True (its strided convs bring HR input to LR)")
        self.center_frame_idx = num_frame // 2 if center_frame_idx is None else center_frame_idx
        if not 0 <= self.center_frame_idx < num_frame:
            raise ValueError(f"center_frame_idx must be in [0, {num_frame}), got {center_frame_idx}")
        self.num_frame, self.hr_in = num_frame, hr_in
        self.with_predeblur, self.with_tsa = with_predeblur, with_tsa

        s, c = (torch.initial_seed() if seed_per_module else None), num_feat
        if with_predeblur:
            self.predeblur = made(s, "predeblur", lambda: PredeblurModule(num_in_ch, c, hr_in))
            self.conv_1x1 = made(s, "conv_1x1", lambda: _conv(c, c, 1))
        else:
            self.conv_first = made(s, "conv_first", lambda: _conv(num_in_ch, c))
        self.feature_extraction = made(s, "feature_extraction", lambda: _blocks(num_extract_block, c))
        self.conv_l2_1 = made(s, "conv_l2_1", lambda: _conv(c, c, 3, 2))
        self.conv_l2_2 = made(s, "conv_l2_2", lambda: _conv(c, c))
        self.conv_l3_1 = made(s, "conv_l3_1", lambda: _conv(c, c, 3, 2))
        self.conv_l3_2 = made(s, "conv_l3_2", lambda: _conv(c, c))

        self.pcd_align = PCDAlignment(c, deformable_groups, self.config.alignment,
                                      residual_offsets, warp_then_estimate,
                                      None if s is None else s + 1,  # its modules: streams of their own
                                      cost_volume)
        if with_tsa:
            self.fusion = made(s, "fusion", lambda: TSAFusion(c, num_frame, self.center_frame_idx))
        else:
            self.fusion = made(s, "fusion", lambda: _conv(num_frame * c, c, 1))

        self.reconstruction = made(s, "reconstruction", lambda: _blocks(num_reconstruct_block, c))
        self.upconv1 = made(s, "upconv1", lambda: _conv(c, c * 4))
        self.upconv2 = made(s, "upconv2", lambda: _conv(c, 64 * 4))  # BasicSR fixes 64 channels after x2
        self.conv_hr = made(s, "conv_hr", lambda: _conv(64, 64))
        self.conv_last = made(s, "conv_last", lambda: _conv(64, num_out_ch))
        if zero_init_output:  # the untrained model is its bilinear base (see EDVRConfig)
            nn.init.zeros_(self.conv_last.weight)
            nn.init.zeros_(self.conv_last.bias)

    @classmethod
    def from_config(cls, config: EDVRConfig) -> EDVR:
        return cls(**config_kwargs(config))

    def extract(self, frames: Tensor) -> list[Tensor]:
        """Feature pyramid of frames ``(M, C_in, H, W)``: [L1 (M, C, h, w), L2 (h/2), L3 (h/4)]."""
        if self.with_predeblur:
            l1 = self.conv_1x1(self.predeblur(frames))
        else:
            l1 = _lrelu(self.conv_first(frames))
        l1 = self.feature_extraction(l1)
        l2 = _lrelu(self.conv_l2_2(_lrelu(self.conv_l2_1(l1))))
        l3 = _lrelu(self.conv_l3_2(_lrelu(self.conv_l3_1(l2))))
        return [l1, l2, l3]

    def _check_input(self, x: Tensor, flows: Tensor | None) -> None:
        if not isinstance(x, Tensor) or x.dim() != 5 or x.shape[1] != self.num_frame:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, T={self.num_frame}, C, h, w), got {shape}")
        multiple = 16 if self.hr_in else 4
        if x.shape[-1] % multiple or x.shape[-2] % multiple:
            raise ValueError(f"x's height and width must be multiples of {multiple}, "
                             f"got {tuple(x.shape[-2:])}")
        if self.config.alignment.kind == "flow_guided" and flows is None:
            raise ValueError("flow_guided alignment needs flows (B, T, 2, h, w) from the centre frame")
        if flows is not None:
            b, t, _, h, w = x.shape
            lr = (h // 4, w // 4) if self.hr_in else (h, w)
            if tuple(flows.shape) != (b, t, 2, *lr):
                raise ValueError(f"flows must have shape (B, T, 2, h, w) = {(b, t, 2, *lr)}, "
                                 f"got {tuple(flows.shape)}")

    def forward(self, x: Tensor, flows: Tensor | None = None, return_aux: bool = False):
        self._check_input(x, flows)
        b, t = x.shape[:2]
        feats = [f.view(b, t, *f.shape[1:]) for f in self.extract(x.flatten(0, 1))]  # L1, L2, L3
        ref = [f[:, self.center_frame_idx] for f in feats]
        flow_l = None if flows is None else flow_pyramid(flows)
        image_mode = self.config.alignment.kind == "image"
        aligned, records = [], []
        for i in range(t):
            feat, rec = self.pcd_align([f[:, i] for f in feats], ref,
                                       None if flow_l is None else [f[:, i] for f in flow_l],
                                       x[:, i] if image_mode else None, self.extract if image_mode else None)
            aligned.append(feat)
            records.append(rec)
        aligned = torch.stack(aligned, dim=1)  # (B, T, C, h, w)

        fused = self.fusion(aligned if self.with_tsa else aligned.flatten(1, 2))  # (B, C, h, w)
        out = self.reconstruction(fused)
        out = _lrelu(F.pixel_shuffle(self.upconv1(out), 2))  # (B, C, 2h, 2w)
        out = _lrelu(F.pixel_shuffle(self.upconv2(out), 2))  # (B, 64, 4h, 4w)
        out = self.conv_last(_lrelu(self.conv_hr(out)))
        center = x[:, self.center_frame_idx]
        base = center if self.hr_in else F.interpolate(center, scale_factor=4, mode="bilinear",
                                                       align_corners=False)
        out = out + base  # learn the residual over the upsampled centre frame
        return (out, _aux(records, aligned)) if return_aux else out

    # ---------------------------------------------------------------- training helpers

    def fusion_parameters(self) -> list[nn.Parameter]:
        """Parameters of the fusion module (TSA), the only ones trained in the first stage (A.1)."""
        return fusion_parameters(self)

    def set_fusion_only(self, fusion_only: bool = True) -> None:
        """Freeze (``requires_grad=False``) everything but the fusion module, or unfreeze all."""
        set_fusion_only(self, fusion_only)

    def set_backend(self, backend: str) -> None:
        """Switch every deformable convolution to ``backend`` (for benchmarks; same weights).

        Kinds without a kernel grid (decomposed, flow) cannot run on "torchvision" and keep theirs.
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        for m in self.modules():
            grid_free = isinstance(m, DecomposedDeformConv2d) and backend != "torchvision"
            if isinstance(m, DeformConv2d) or grid_free:
                m.backend = backend


def fusion_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``model.fusion``: EDVR's TSA module (BasicSR's name), or any model's
    module of that name. The one rule for the TSA stage, used by ``EDVR`` and the trainer."""
    fusion = getattr(model, "fusion", None)
    if not isinstance(fusion, nn.Module):
        raise ValueError(f"{type(model).__name__} has no fusion module (model.fusion) to train alone")
    return list(fusion.parameters())


def set_fusion_only(model: nn.Module, fusion_only: bool = True) -> None:
    """The first stage of two-stage TSA training (Sec. A.1): only ``fusion_parameters`` train."""
    keep = {id(p) for p in fusion_parameters(model)} if fusion_only else set()
    for p in model.parameters():
        p.requires_grad_(not fusion_only or id(p) in keep)


def _aux(records: list[dict[str, Aligned]], aligned: Tensor) -> dict:
    """Stack the per-frame ``Aligned`` records over frames: see the module docstring."""
    def stack(level, field):
        values = [getattr(r[level], field) for r in records]
        return None if values[0] is None else torch.stack(values, dim=1)

    return {
        "offsets": {level: stack(level, "offset") for level in LEVELS},
        "masks": {level: stack(level, "mask") for level in LEVELS},
        "aligned": {level: stack(level, "feat") for level in LEVELS},
        "aligned_feat": aligned,
    }


def _unreadable(path: str | Path, error: Exception) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, in one line."""
    if "Weights only load failed" in str(error):
        return ("it holds Python objects besides tensors and plain containers, which "
                "torch.load(weights_only=True) refuses (a BasicSR checkpoint holds only tensors)")
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith((b"PK", b"\x80")):  # torch.save's zip archive (or legacy pickle), cut short or damaged
        return f"a damaged or truncated torch.save file ({type(error).__name__})"
    return f"not a file written by torch.save ({type(error).__name__})"


def read_basicsr_state_dict(path: str | Path, param_key: str = "params") -> dict[str, Tensor]:
    """A BasicSR checkpoint's state dict: ``{"params": sd}``, ``{"params_ema": sd}`` or a bare sd.

    Loaded with ``weights_only=True``; ``param_key`` is preferred when both keys are
    present; a ``module.`` prefix (from DataParallel / DDP) is stripped. A missing file raises
    ``FileNotFoundError``, a file ``torch.load`` cannot read (not a PyTorch file, truncated,
    holding more than tensors and plain containers) a one-line ``ValueError`` naming it.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and weights-only errors alike: say which file and why
        raise ValueError(f"{path}: not a readable PyTorch checkpoint: {_unreadable(path, error)}") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    for key in (param_key, "params", "params_ema"):
        if key in ckpt and isinstance(ckpt[key], dict):
            ckpt = ckpt[key]
            break
    bad = [k for k, v in ckpt.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"{path}: not a state dict (or one under 'params' / 'params_ema'); "
                         f"non-tensor entries {bad[:5]}")
    return {k.removeprefix("module."): v for k, v in ckpt.items()}


def load_basicsr_checkpoint(model: nn.Module, path: str | Path, param_key: str = "params",
                            strict: bool = True) -> nn.Module:
    """Load a BasicSR EDVR checkpoint file into ``model`` (``strict`` as ``load_state_dict``)."""
    model.load_state_dict(read_basicsr_state_dict(path, param_key), strict=strict)
    return model
