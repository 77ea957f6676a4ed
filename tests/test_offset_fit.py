"""One offset field fitted to two frames: coarse to fine finds a motion that one level misses."""

import pytest
import torch
import torch.nn.functional as F

from dalign_nb.offset_fit import fit_offset_field


def _textured(size: int = 48, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, size + 4, size + 4, generator=g)
    return F.avg_pool2d(noise, 5, stride=1)  # (1, 3, size, size): texture a few pixels wide


def _within_1px(offsets, dy: float, dx: float, border: int = 6) -> float:
    o = offsets[0, :, border:-border, border:-border]
    return float((((o[0] - dy) ** 2 + (o[1] - dx) ** 2).sqrt() < 1).float().mean())


def test_coarse_to_fine_finds_a_shift_that_one_level_misses():
    ref = _textured()
    nbr = torch.roll(ref, shifts=(0, 3), dims=(-2, -1))  # moved 3 px right: offsets (0, +3)
    c2f = fit_offset_field(ref, nbr, coarse_to_fine=True, penalty="rgb", steps=100)
    one = fit_offset_field(ref, nbr, coarse_to_fine=False, penalty="rgb", steps=300)
    assert _within_1px(c2f.offsets, 0, 3) > 0.9
    assert _within_1px(one.offsets, 0, 3) < 0.5
    assert list(c2f.by_level) == ["l3", "l2", "l1"] and c2f.by_level["l3"].shape[-1] == 12
    assert len(c2f.losses) == 300 and c2f.losses[-1] < c2f.losses[0]


def test_a_sub_pixel_shift_is_found_at_one_level_too():
    ref = _textured(seed=1)
    nbr = torch.roll(ref, shifts=(1, 0), dims=(-2, -1))
    fitted = fit_offset_field(ref, nbr, coarse_to_fine=False, penalty="census", steps=150)
    assert _within_1px(fitted.offsets, 1, 0) > 0.9


def test_bad_frames_are_refused():
    with pytest.raises(ValueError, match="multiples of 4"):
        fit_offset_field(torch.rand(1, 3, 10, 12), torch.rand(1, 3, 10, 12))
    with pytest.raises(ValueError, match=r"\(1, 3, h, w\)"):
        fit_offset_field(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 12))
