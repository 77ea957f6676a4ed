"""Figure helpers of ``dalign_nb.viz`` that compute something: the crop two images differ most in,
the crops' PSNR titles."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dalign_nb import viz  # noqa: E402


def test_most_different_crop_finds_the_changed_window():
    a = torch.zeros(3, 64, 80)
    b = a.clone()
    b[:, 40:56, 50:66] = 1.0  # a 16 x 16 patch changed
    assert viz.most_different_crop(a, b, 16, stride=2) == (40, 50)
    assert viz.most_different_crop(a, b, 32, stride=16) == (32, 48)  # the window covering most of it
    with pytest.raises(ValueError, match="one shape"):
        viz.most_different_crop(a, b[:, :32], 16)
    with pytest.raises(ValueError, match="exceeds"):
        viz.most_different_crop(a, b, 65)


def test_show_crops_titles_each_panel_with_its_psnr():
    gt = torch.rand(3, 32, 32)
    fig = viz.show_crops({"noisy": (gt + 0.1).clamp(0, 1), "same": gt.clone()}, gt, (8, 8), 16)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1] == "same\ninf dB" and titles[2] == "ground truth" and titles[0].startswith("noisy\n2")
    plt.close(fig)
