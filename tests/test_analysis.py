"""dalign_nb.analysis: the viewers' numbers without a widget library, against hand computations."""

import subprocess
import sys

import torch

from dalign_nb.analysis import (
    ClipFrames,
    ModelOutputs,
    analyse_offsets,
    forward_backward_occlusion,
    level_occlusion,
)


def test_analysis_imports_no_widget_library():
    code = ("import sys, dalign_nb.analysis; "
            "print(sorted(m for m in ('ipywidgets', 'ipyevents') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_level_occlusion_marks_a_level_pixel_with_any_occluded_lr_pixel():
    occ = torch.zeros(4, 6, dtype=torch.bool)
    occ[1, 3] = True  # in the 2x2 block (0, 1) of level 2
    occ[3, 0] = True  # in block (1, 0)
    assert level_occlusion(occ, 2).tolist() == [[False, True, False], [True, False, False]]
    assert torch.equal(level_occlusion(occ, 1), occ)


def test_forward_backward_occlusion_by_hand():
    fw = torch.zeros(1, 2, 6, 8)
    fw[:, 0] = 2.0  # everything moves 2 px right
    consistent = forward_backward_occlusion(fw, -fw)[0]
    # p + (2, 0) leaves the frame in the last two columns; elsewhere the flows cancel exactly
    assert consistent[:, :6].sum() == 0 and consistent[:, 6:].all()
    # a backward flow that does not come back: |w_f + w_b|^2 = 16 > 0.01 * (4 + 4) + 0.5
    assert forward_backward_occlusion(fw, fw)[0].all()
    # a small disagreement stays under the bound: |0.5|^2 = 0.25 < 0.01 * (4 + 2.25) + 0.5
    nudged = -fw + torch.tensor([0.5, 0.0]).view(1, 2, 1, 1)
    assert forward_backward_occlusion(fw, nudged)[0, :, :6].sum() == 0


def test_analyse_offsets_by_hand():
    """Constant offsets against a constant flow: distances, order and diversity by hand."""
    t, h, w = 3, 8, 8
    offsets = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]])  # (N, 2) as (dy, dx)
    off = offsets.view(1, 1, 3, 2, 1, 1).expand(t, 1, 3, 2, h, w).clone()
    masks = torch.rand(t, 1, 3, h, w)
    flow = torch.zeros(t, 2, h, w)
    flow[:, 0], flow[:, 1] = 1.0, 2.0  # (u, v): dx = 1, dy = 2
    occ = torch.zeros(t, h, w, dtype=torch.bool)
    occ[:, 0] = True
    frames = ClipFrames("hand", 1, torch.zeros(t, 3, h, w), flow + 0.5, flow, occ, True)
    outputs = ModelOutputs("decomposed", 1, 3, None, {"l1": off}, {"l1": masks}, {}, [], torch.zeros(3), 0.0)
    a = analyse_offsets(outputs, frames, 2, "l1", 0)
    # l1 distances |dx - 1| + |dy - 2|: (0, 0) -> 3, (2, 0) -> 1, (1, 3) -> 3
    torch.testing.assert_close(a.distance[:, 4, 4], torch.tensor([3.0, 1.0, 3.0]))
    assert a.order.tolist() == [1, 0, 2]  # stable: offset 0 before offset 2 at equal distance
    torch.testing.assert_close(a.mean_distance, torch.tensor([1.0, 3.0, 3.0]))
    # diversity: mean (1, 1); squared deviations 2, 2, 4 -> sqrt(8 / 3)
    torch.testing.assert_close(a.diversity, torch.full((h, w), (8 / 3) ** 0.5))
    torch.testing.assert_close(a.flow, flow[2])  # the exact flow is the reference
    torch.testing.assert_close(a.flow_est, flow[2] + 0.5)
    assert a.occlusion[0].all() and not a.occlusion[1:].any() and a.scale == 1
    torch.testing.assert_close(a.masks, masks[2, 0])


def test_offset_layout_of_the_decomposition_on_the_kernel_grid_is_the_dcn_s():
    """Table 1's twins sample at the same positions p + p_k + dp_k: the layout says so for both."""
    from dalign_nb.alignment import AlignmentConfig
    from dalign_nb.analysis import offset_layout
    from dalign_nb.models.edvr import build_edvr

    layouts = {}
    for kind, extra in (("dcn", {}), ("decomposed", {"num_offsets": 9, "grid": True})):
        align = AlignmentConfig(kind=kind, kernel_size=3, modulated=False, **extra)
        layouts[kind] = offset_layout(build_edvr("tiny", alignment=align, deformable_groups=2, num_frame=3))
    assert layouts == {"dcn": ("dcn", 2, 9, 3), "decomposed": ("decomposed", 2, 9, 3)}
