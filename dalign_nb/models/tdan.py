"""A TDAN-like network with N offsets per deformable group: the left half of Table 2.

TDAN (Tian et al., "TDAN: Temporally-Deformable Alignment Network for Video Super-Resolution",
CVPR 2020) aligns each neighbouring frame to the reference in *feature* space with deformable
convolution, maps the aligned feature back to an LR image, and super-resolves the stack of
aligned LR frames. The paper (Sec. 4.2, Table 2) trains it with N = 1, 9 and 25 offsets and
reports 33.313, 33.483 and 33.540 dB on Vimeo-90K-T: more offsets, better SR.

Module and parameter names follow TDAN's public code (``model.py``, ``TDAN_VSR``):
``conv_first`` and ``residual_layer`` (shared feature extractor), ``cr`` (the concatenated
reference and neighbour features reduced to C channels), ``dconv`` (the deformable
convolution), ``recon_lr`` (aligned feature -> LR frame), ``fea_ex`` / ``recon_layer`` /
``up`` (reconstruction). The code is written here.

The deformable convolution is ``alignment.DecomposedAlignment`` (Eq. 3: N warps per group and
a 1x1 convolution), so one class covers every N: with ``N = k*k`` (k odd, > 1) and ``grid``
its offsets sit on the k x k kernel grid and it *is* the k x k DCN of Eq. 1 (``N = 9, 25``:
k = 3, 5); any other N (``N = 1``: one flow-like offset per group) has no grid (Remark 1).

Departures from TDAN, named:

* TDAN computes the offset feature with two deformable convolutions (``dconv_1``,
  ``deconv_2``) after ``cr`` and refines the aligned feature with a fourth one (``dconv``);
  ours uses ``num_trans_conv`` plain 3x3 convolutions (leaky ReLU) for the offset feature and
  keeps one deformable convolution, the one that samples the neighbour (TDAN's ``deconv_3``),
  so the model's offsets are those of one DCN with N offsets, the quantity Table 2 varies.
* TDAN predicts the SR frame outright; ours adds the bilinearly upsampled centre frame (as
  EDVR) and starts ``up``'s last convolution at zero (``zero_init_output``), so the untrained
  model is that bilinear base. Initialisation is BasicSR's (residual blocks Kaiming x 0.1).
* TDAN trains with an alignment loss on the aligned LR frames; ``aux["aligned_lr"]`` holds
  them, and ``train.aligned_lr_weight`` adds that loss (``losses.aligned_frames_loss``,
  MMEditing's MSE at 0.25). Table 2's runs (experiment ``table2``) use the warping term on each
  group's mean offset instead, as the issue asks of every Sec. 4 model: the loss on the
  aligned frames would pull the whole DCN output, hence its N samples, towards one image.

``model(x, return_aux=True)`` returns ``(out, aux)`` in EDVR's layout at the one level there
is, ``"l1"`` (the LR size ``h x w``), stacked over the T input frames (the centre frame, which
TDAN does not align, at zero offsets):

* ``aux["offsets"]["l1"]``: ``(B, T, 2*G*N, h, w)`` offsets ``dp`` in the (dy, dx) layout of
  ``ops`` (on the grid, without the kernel grid ``p_k``, as a DCN's);
* ``aux["masks"]["l1"]``: ``(B, T, G*N, h, w)`` or None (``modulated=False``, TDAN's DCNv1);
* ``aux["aligned"]["l1"]`` and ``aux["aligned_feat"]``: ``(B, T, C, h, w)`` aligned features;
* ``aux["aligned_lr"]``: ``(B, T, 3, h, w)`` the aligned LR frames the reconstruction sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..alignment import Aligned, AlignmentConfig, build_alignment
from .common import bilinear_x4, check_clip, check_config, upsampler_x4, with_centre
from .edvr import _blocks, _conv, _lrelu, config_kwargs, replace_preset

__all__ = ["TDAN", "TDANConfig", "TDAN_PRESETS", "build_tdan", "tdan_config"]


@dataclass(frozen=True)
class TDANConfig:
    """TDAN's hyper-parameters (its code's values as defaults) plus N, the offsets per group.

    num_offsets: N; with ``grid`` and ``N = k*k`` (k odd, > 1) the k x k DCN on its kernel grid;
    deformable_groups: G (TDAN: 8); num_extract_block: residual blocks of the feature extractor
    (TDAN: 5); num_trans_conv: plain convolutions after ``cr`` computing the offset feature (see
    the module docstring); num_reconstruct_block: residual blocks of the reconstruction (TDAN:
    10); modulated: DCNv2 masks (TDAN: False, DCNv1); zero_init_output: ours, see the module
    docstring.
    """

    num_feat: int = 64
    num_frame: int = 5
    num_offsets: int = 9
    deformable_groups: int = 8
    num_extract_block: int = 5
    num_trans_conv: int = 2
    num_reconstruct_block: int = 10
    grid: bool = True
    modulated: bool = False
    center_frame_idx: int | None = None  # None: num_frame // 2
    zero_init_output: bool = True

    def __post_init__(self):
        check_config(self, num_feat=1, num_frame=2, num_offsets=1, deformable_groups=1, num_extract_block=0,
                     num_trans_conv=0, num_reconstruct_block=0)
        if self.num_feat % self.deformable_groups:
            raise ValueError(f"num_feat ({self.num_feat}) must be divisible by deformable_groups "
                             f"({self.deformable_groups})")

    @property
    def kernel_size(self) -> int | None:
        """k when the N offsets sit on a k x k kernel grid (``grid`` and ``N = k*k``, k odd > 1)."""
        k = math.isqrt(self.num_offsets)
        on_grid = self.grid and k * k == self.num_offsets and k % 2 == 1 and k > 1
        return k if on_grid else None

    @property
    def alignment(self) -> AlignmentConfig:
        """The deformable convolution as an ``AlignmentConfig``: always "decomposed" (Eq. 3)."""
        k = self.kernel_size
        if k is None:
            return AlignmentConfig(kind="decomposed", num_offsets=self.num_offsets, modulated=self.modulated)
        return AlignmentConfig(kind="decomposed", grid=True, kernel_size=k, num_offsets=self.num_offsets,
                               modulated=self.modulated)

    @property
    def takes_flows(self) -> bool:
        """TDAN takes no optical flow (``EDVRConfig.takes_flows``' rule)."""
        return False

    @property
    def offsets_per_group(self) -> int:
        """N, the offsets per deformable group (``EDVRConfig.offsets_per_group``' meaning)."""
        return self.num_offsets

    @property
    def has_masks(self) -> bool:
        """Whether the deformable convolution predicts modulation masks (DCNv2; TDAN's is DCNv1)."""
        return self.modulated

    @property
    def offset_levels(self) -> tuple[str, ...]:
        """The keys of ``aux["offsets"]``: one level, ``"l1"`` (the LR size)."""
        return ("l1",)


# "tdan" is TDAN's own size; "small" is ours for CPU training, "tiny" for tests.
TDAN_PRESETS: dict[str, TDANConfig] = {
    "tdan": TDANConfig(),
    "small": TDANConfig(num_feat=32, num_frame=3, deformable_groups=1, num_extract_block=2,
                        num_trans_conv=2, num_reconstruct_block=4),
    "tiny": TDANConfig(num_feat=8, num_frame=3, deformable_groups=1, num_extract_block=1,
                       num_trans_conv=1, num_reconstruct_block=1),
}


def tdan_config(preset: str = "small", **changes) -> TDANConfig:
    """A preset's ``TDANConfig`` with ``changes`` applied (``dataclasses.replace``)."""
    return replace_preset(TDAN_PRESETS, preset, **changes)


def build_tdan(preset: str = "small", **changes) -> TDAN:
    """``TDAN.from_config(tdan_config(preset, **changes))``."""
    return TDAN.from_config(tdan_config(preset, **changes))


class TDAN(nn.Module):
    """TDAN-like x4 VSR, x ``(B, T, 3, h, w)`` in [0, 1] -> ``(B, 3, 4h, 4w)`` (see the module docstring).

    Arguments are ``TDANConfig``'s. ``forward(x, return_aux=False)``.
    """

    def __init__(self, num_feat: int = 64, num_frame: int = 5, num_offsets: int = 9,
                 deformable_groups: int = 8, num_extract_block: int = 5, num_trans_conv: int = 2,
                 num_reconstruct_block: int = 10, grid: bool = True, modulated: bool = False,
                 center_frame_idx: int | None = None, zero_init_output: bool = True):
        super().__init__()
        self.config = TDANConfig(
            num_feat=num_feat, num_frame=num_frame, num_offsets=num_offsets,
            deformable_groups=deformable_groups, num_extract_block=num_extract_block,
            num_trans_conv=num_trans_conv, num_reconstruct_block=num_reconstruct_block, grid=grid,
            modulated=modulated, center_frame_idx=center_frame_idx, zero_init_output=zero_init_output)
        self.num_frame, self.hr_in = num_frame, False
        self.center_frame_idx = num_frame // 2 if center_frame_idx is None else center_frame_idx
        c = num_feat
        self.conv_first = _conv(3, c)
        self.residual_layer = _blocks(num_extract_block, c)
        self.cr = _conv(2 * c, c)
        self.trans_conv = nn.ModuleList([_conv(c, c) for _ in range(num_trans_conv)])
        self.dconv = build_alignment(self.config.alignment, c, deformable_groups)
        self.recon_lr = _conv(c, 3)
        self.fea_ex = nn.Sequential(_conv(3 * num_frame, c), nn.ReLU())
        self.recon_layer = _blocks(num_reconstruct_block, c)
        self.up = upsampler_x4(c, zero_last=zero_init_output)  # zero: the untrained model is its base

    @classmethod
    def from_config(cls, config: TDANConfig) -> TDAN:
        return cls(**config_kwargs(config))

    def extract(self, frames: Tensor) -> list[Tensor]:
        """Features of frames ``(M, 3, h, w)``: ``[L1 (M, C, h, w)]`` (one level; EDVR's has three)."""
        return [self.residual_layer(F.relu(self.conv_first(frames)))]

    def align(self, nbr_feat: Tensor, ref_feat: Tensor) -> Aligned:
        """Align neighbour features ``(M, C, h, w)`` to the reference's: offsets from ``cat(ref, nbr)``."""
        feat = _lrelu(self.cr(torch.cat([ref_feat, nbr_feat], dim=1)))  # (M, C, h, w), TDAN's order
        for conv in self.trans_conv:
            feat = _lrelu(conv(feat))
        return self.dconv.align(nbr_feat, feat)  # feat (M, C, h, w), offset (M, 2*G*N, h, w)

    def reconstruct(self, lrs: Tensor) -> Tensor:
        """TDAN's SR network on the aligned LR frames ``(B, T, 3, h, w)``: -> residual ``(B, 3, 4h, 4w)``."""
        return self.up(self.recon_layer(self.fea_ex(lrs.flatten(1, 2))))

    def forward(self, x: Tensor, return_aux: bool = False):
        check_clip(x, self.num_frame)
        b, t, _, h, w = x.shape
        ci = self.center_frame_idx
        feat = self.extract(x.flatten(0, 1))[0].view(b, t, -1, h, w)  # (B, T, C, h, w)
        nbr = torch.cat([feat[:, :ci], feat[:, ci + 1:]], dim=1)  # (B, T-1, C, h, w)
        ref = feat[:, ci, None].expand_as(nbr)
        rec = self.align(nbr.flatten(0, 1), ref.flatten(0, 1))  # on (B*(T-1), C, h, w)
        lrs = self.recon_lr(rec.feat).view(b, t - 1, 3, h, w)
        lrs = with_centre(lrs, x[:, ci], ci)  # (B, T, 3, h, w): TDAN keeps the centre frame as it is
        out = self.reconstruct(lrs) + bilinear_x4(x[:, ci])  # (B, 3, 4h, 4w)
        return (out, self._aux(rec, feat, lrs)) if return_aux else out

    def _aux(self, rec: Aligned, feat: Tensor, lrs: Tensor) -> dict:
        b, t = feat.shape[:2]
        ci = self.center_frame_idx

        def stacked(value: Tensor | None, centre: Tensor) -> Tensor | None:
            return None if value is None else with_centre(value.view(b, t - 1, *value.shape[1:]), centre, ci)

        offset = stacked(rec.offset, rec.offset.new_zeros(b, *rec.offset.shape[1:]))  # (B, T, 2GN, h, w)
        mask = stacked(rec.mask, None if rec.mask is None else rec.mask.new_ones(b, *rec.mask.shape[1:]))
        aligned = stacked(rec.feat, feat[:, ci])  # (B, T, C, h, w)
        return {"offsets": {"l1": offset}, "masks": {"l1": mask}, "aligned": {"l1": aligned},
                "aligned_feat": aligned, "aligned_lr": lrs}
