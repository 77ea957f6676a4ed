"""A flow-based network with N flows per neighbour: the right half of Table 2.

The paper's footnote 3: "We use an architecture similar to TOFlow (Xue et al. 2019) except that
spatial warping is done on LR space instead of HR space for computational efficiency. We
increase the number of offsets by using multiple SPyNet (Ranjan and Black 2017)." Table 2
reports 32.835, 32.973 and 33.017 dB on Vimeo-90K-T for N = 1, 2, 3: offset diversity helps
image alignment too.

TOFlow (Xue et al., "Video Enhancement with Task-Oriented Flow", IJCV 2019) estimates a flow
from the reference to each neighbour with SPyNet, warps the neighbour *image* backwards by it,
and reconstructs from the stack of warped frames. SPyNet (Ranjan & Black, "Optical Flow
Estimation using a Spatial Pyramid Network", CVPR 2017) builds the flow coarse to fine: at
level ``l`` (average-pooled frames) a small CNN ``G_l`` sees the reference, the neighbour
warped by the upsampled coarser flow, and that flow, and adds a residual:
``V_l = up2(V_{l+1}) * 2 + G_l(I_ref, warp(I_nbr, up2(V_{l+1}) * 2), up2(V_{l+1}) * 2)``.

Here ``num_offsets`` = N SPyNets (``spynet[n]``) give N flows per neighbour, each warps the LR
neighbour (``ops.flow_warp``), and the ``T * N`` warped frames are fused and super-resolved.
With N = 1 the model's alignment is exactly flow warping of the image. Names follow BasicSR's
``tof_arch.py`` (``spynet...basic_module``, ``conv_1``, ``conv_2``); the code is written here.

Departures from TOFlow, named:

* warping and reconstruction in LR space, with x4 upsampling (TDAN's ``up``, ``upsampler_x4``)
  after residual blocks, as the paper's footnote says (TOFlow works on bicubically upsampled
  frames and its ``conv_3`` / ``conv_4`` are 1x1 convolutions at HR);
* SPyNet's basic modules without batch normalisation (as BasicSR's general SPyNet), of width
  ``spynet_feat`` (SPyNet: 32, channels 32-64-32-16) and ``num_levels`` levels (TOFlow: 4),
  trained from scratch with their last convolution at zero, so every flow starts at zero
  (SPyNet is normally pre-trained on flow data, which is not at hand here); no ImageNet
  normalisation of the frames;
* the output is a residual over the bilinearly upsampled centre frame, ``up``'s last
  convolution at zero (``zero_init_output``): the untrained model is that bilinear base.

``model(x, return_aux=True)`` returns ``(out, aux)`` in EDVR's layout (``models.edvr``), the
centre frame at zero flow, G = 1:

* ``aux["offsets"][f"l{i}"]``: ``(B, T, 2*N, h_i, w_i)`` the N flows of SPyNet level ``l{i}``
  (``l1`` the finest, at the LR size; ``l2`` at half of it, ...) as (dy, dx) pairs
  (``ops.flow_to_offset``'s layout), in that level's pixels, so that the photometric term and
  the offset measures read them as they read EDVR's PCD offsets;
* ``aux["masks"][level]``: None;
* ``aux["aligned"]["l1"]`` and ``aux["aligned_feat"]``: ``(B, T, N*3, h, w)`` the warped
  frames, ``[:, t, 3n:3n+3]`` = ``flow_warp(x[:, t], flow n)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import flow_warp
from .common import bilinear_x4, check_clip, check_config, upsampler_x4, with_centre
from .edvr import _blocks, _conv, _up2, config_kwargs, replace_preset

__all__ = ["FLOWNET_PRESETS", "FlowNet", "FlowNetConfig", "SPyNet", "build_flownet", "flownet_config"]


@dataclass(frozen=True)
class FlowNetConfig:
    """The flow-based network's hyper-parameters.

    num_offsets: N, flows (SPyNets) per neighbour; num_levels: SPyNet's pyramid levels (input
    height and width must be multiples of ``2**(num_levels - 1)``); spynet_feat: SPyNet's width
    (channels ``w, 2w, w, w/2``); spynet_kernel: its convolutions' size (SPyNet: 7);
    fusion_kernel: TOFlow's ``conv_1`` / ``conv_2`` size (TOFlow: 9); num_reconstruct_block:
    residual blocks before upsampling (ours).
    """

    num_feat: int = 64
    num_frame: int = 7
    num_offsets: int = 1
    num_levels: int = 4
    spynet_feat: int = 32
    spynet_kernel: int = 7
    fusion_kernel: int = 9
    num_reconstruct_block: int = 10
    center_frame_idx: int | None = None  # None: num_frame // 2
    zero_init_output: bool = True

    def __post_init__(self):
        check_config(self, num_feat=1, num_frame=2, num_offsets=1, num_levels=1, num_reconstruct_block=0,
                     spynet_feat=2, spynet_kernel=1, fusion_kernel=1)
        if self.spynet_feat % 2:
            raise ValueError(f"spynet_feat must be an even int >= 2 (channels w, 2w, w, w/2), "
                             f"got {self.spynet_feat!r}")
        for name in ("spynet_kernel", "fusion_kernel"):
            if getattr(self, name) % 2 == 0:
                raise ValueError(f"{name} must be odd, to keep the frame size, got {getattr(self, name)!r}")

    @property
    def offsets_per_group(self) -> int:
        """N (one group): what ``AlignmentConfig.offsets_per_group`` is for EDVR."""
        return self.num_offsets

    @property
    def takes_flows(self) -> bool:
        """It estimates its own flows: it takes none (``EDVRConfig.takes_flows``' rule)."""
        return False

    @property
    def has_masks(self) -> bool:
        """Flow warping has no modulation masks."""
        return False

    @property
    def offset_levels(self) -> tuple[str, ...]:
        """The keys of ``aux["offsets"]``: SPyNet's levels, coarse to fine (``"l1"`` the LR size)."""
        return tuple(f"l{i}" for i in range(self.num_levels, 0, -1))


# "toflow" is TOFlow's size (7 frames, 4 SPyNet levels); "small" is ours for CPU training,
# "tiny" for tests.
FLOWNET_PRESETS: dict[str, FlowNetConfig] = {
    "toflow": FlowNetConfig(),
    "small": FlowNetConfig(num_feat=32, num_frame=3, num_levels=3, spynet_feat=16, spynet_kernel=5,
                           fusion_kernel=3, num_reconstruct_block=4),
    "tiny": FlowNetConfig(num_feat=8, num_frame=3, num_levels=2, spynet_feat=4, spynet_kernel=3,
                          fusion_kernel=3, num_reconstruct_block=1),
}


def flownet_config(preset: str = "small", **changes) -> FlowNetConfig:
    """A preset's ``FlowNetConfig`` with ``changes`` applied (``dataclasses.replace``)."""
    return replace_preset(FLOWNET_PRESETS, preset, **changes)


def build_flownet(preset: str = "small", **changes) -> FlowNet:
    """``FlowNet.from_config(flownet_config(preset, **changes))``."""
    return FlowNet.from_config(flownet_config(preset, **changes))


class BasicModule(nn.Module):
    """SPyNet's ``G_l``: ``cat(ref, warped neighbour, flow)`` (8 channels) -> residual flow (u, v).

    Convolutions ``8 -> w -> 2w -> w -> w/2 -> 2`` with ReLU between; the last starts at zero.
    """

    def __init__(self, feat: int = 32, kernel: int = 7):
        super().__init__()
        chans = (8, feat, 2 * feat, feat, feat // 2)
        layers = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [_conv(c_in, c_out, kernel), nn.ReLU()]
        self.basic_module = nn.Sequential(*layers, _conv(chans[-1], 2, kernel))
        nn.init.zeros_(self.basic_module[-1].weight)
        nn.init.zeros_(self.basic_module[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.basic_module(x)


class SPyNet(nn.Module):
    """SPyNet (Ranjan & Black 2017): the flow from ``ref`` to ``supp``, coarse to fine.

    ``forward(ref, supp)`` with frames ``(M, 3, h, w)`` returns the flows of every level,
    coarse to fine, ``[(M, 2, h / 2**(L-1), ...), ..., (M, 2, h, w)]``, (u, v) in each level's
    pixels; ``flow_warp(supp, flows[-1])`` aligns ``supp`` to ``ref``.
    """

    def __init__(self, num_levels: int = 4, feat: int = 32, kernel: int = 7):
        super().__init__()
        self.basic_module = nn.ModuleList([BasicModule(feat, kernel) for _ in range(num_levels)])

    def forward(self, ref: Tensor, supp: Tensor) -> list[Tensor]:
        refs, supps = [ref], [supp]
        for _ in range(len(self.basic_module) - 1):  # frame pyramids, coarsest first
            refs.insert(0, F.avg_pool2d(refs[0], 2))
            supps.insert(0, F.avg_pool2d(supps[0], 2))
        flow = ref.new_zeros(ref.shape[0], 2, *refs[0].shape[-2:])  # (M, 2, h_L, w_L)
        flows = []
        for i, module in enumerate(self.basic_module):
            if i:
                flow = _up2(flow) * 2  # a displacement doubles with the resolution
            # V_l = V_up + G_l(I_ref, warp(I_nbr, V_up), V_up)
            flow = flow + module(torch.cat([refs[i], flow_warp(supps[i], flow), flow], dim=1))
            flows.append(flow)
        return flows


class FlowNet(nn.Module):
    """Flow-based x4 VSR with N flows per neighbour, x ``(B, T, 3, h, w)`` -> ``(B, 3, 4h, 4w)``.

    Arguments are ``FlowNetConfig``'s; see the module docstring. ``forward(x, return_aux=False)``.
    """

    def __init__(self, num_feat: int = 64, num_frame: int = 7, num_offsets: int = 1, num_levels: int = 4,
                 spynet_feat: int = 32, spynet_kernel: int = 7, fusion_kernel: int = 9,
                 num_reconstruct_block: int = 10, center_frame_idx: int | None = None,
                 zero_init_output: bool = True):
        super().__init__()
        self.config = FlowNetConfig(
            num_feat=num_feat, num_frame=num_frame, num_offsets=num_offsets, num_levels=num_levels,
            spynet_feat=spynet_feat, spynet_kernel=spynet_kernel, fusion_kernel=fusion_kernel,
            num_reconstruct_block=num_reconstruct_block, center_frame_idx=center_frame_idx,
            zero_init_output=zero_init_output)
        self.num_frame, self.num_offsets, self.hr_in = num_frame, num_offsets, False
        self.center_frame_idx = num_frame // 2 if center_frame_idx is None else center_frame_idx
        self.spynet = nn.ModuleList([SPyNet(num_levels, spynet_feat, spynet_kernel)
                                     for _ in range(num_offsets)])
        self.conv_1 = _conv(3 * num_frame * num_offsets, num_feat, fusion_kernel)
        self.conv_2 = _conv(num_feat, num_feat, fusion_kernel)
        self.reconstruction = _blocks(num_reconstruct_block, num_feat)
        self.up = upsampler_x4(num_feat, zero_last=zero_init_output)  # zero: the untrained model is its base

    @classmethod
    def from_config(cls, config: FlowNetConfig) -> FlowNet:
        return cls(**config_kwargs(config))

    def flows(self, ref: Tensor, supp: Tensor) -> list[Tensor]:
        """The N flows from ``ref`` to ``supp`` ``(M, 3, h, w)``, per level coarse to fine:
        ``[(M, N, 2, h_l, w_l), ...]`` in (u, v) order."""
        per_net = [net(ref, supp) for net in self.spynet]  # N lists of L flows
        return [torch.stack(level, dim=1) for level in zip(*per_net)]

    def warp(self, supp: Tensor, flow: Tensor) -> Tensor:
        """N backward warps of ``supp`` (M, 3, h, w) by ``flow`` (M, N, 2, h, w): (M, N, 3, h, w)."""
        m, n = flow.shape[:2]
        images = supp[:, None].expand(-1, n, -1, -1, -1).flatten(0, 1)  # (M*N, 3, h, w)
        return flow_warp(images, flow.flatten(0, 1)).view(m, n, *supp.shape[1:])

    def offset_branches(self) -> list[tuple[nn.Conv2d, int]]:
        """Every convolution whose output is a flow (residual), with its 2 channels: zeroed
        (``experiments.zero_offsets``' contract), every flow is zero and no frame is moved."""
        return [(module.basic_module[-1], 2) for net in self.spynet for module in net.basic_module]

    def forward(self, x: Tensor, return_aux: bool = False):
        check_clip(x, self.num_frame, 2 ** (self.config.num_levels - 1))
        b, t, _, h, w = x.shape
        ci, n = self.center_frame_idx, self.num_offsets
        nbr = torch.cat([x[:, :ci], x[:, ci + 1:]], dim=1).flatten(0, 1)  # (B*(T-1), 3, h, w)
        ref = x[:, ci, None].expand(-1, t - 1, -1, -1, -1).flatten(0, 1)
        flows = self.flows(ref, nbr)  # per level (B*(T-1), N, 2, h_l, w_l)
        warped = self.warp(nbr, flows[-1]).view(b, t - 1, n * 3, h, w)
        aligned = with_centre(warped, x[:, ci].repeat(1, n, 1, 1), ci)  # (B, T, N*3, h, w)
        feat = F.relu(self.conv_2(F.relu(self.conv_1(aligned.flatten(1, 2)))))  # (B, C, h, w)
        out = self.up(self.reconstruction(feat)) + bilinear_x4(x[:, ci])  # (B, 3, 4h, 4w)
        return (out, self._aux(flows, aligned)) if return_aux else out

    def _aux(self, flows: list[Tensor], aligned: Tensor) -> dict:
        b, t = aligned.shape[:2]
        offsets = {}
        for i, flow in enumerate(reversed(flows)):  # l1 the finest
            off = flow.flip(2).flatten(1, 2)  # (u, v) -> (dy, dx): (B*(T-1), 2N, h_l, w_l)
            off = off.view(b, t - 1, *off.shape[1:])
            offsets[f"l{i + 1}"] = with_centre(off, off.new_zeros(b, *off.shape[2:]), self.center_frame_idx)
        return {"offsets": offsets, "masks": dict.fromkeys(offsets), "aligned": {"l1": aligned},
                "aligned_feat": aligned}
