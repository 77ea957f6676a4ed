"""imresize against MATLAB's bicubic, derived by hand; BD degradation.

How the reference values are derived, independently of ``imresize``'s code: MATLAB's
``imresize(img, 1/4, 'bicubic')`` puts output pixel i (0-based) at input coordinate
``4i + 1.5`` and, because it antialiases when shrinking, weighs input pixel j by
``cubic((j - 4i - 1.5) / 4)`` with Keys' cubic, a = -0.5:

    |x| <= 1:      1.5|x|^3 - 2.5|x|^2 + 1
    1 < |x| <= 2: -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2

The 16 taps have |x| = 1/8, 3/8, ..., 15/8. By hand, e.g. cubic(1/8) = 1.5/512 - 2.5/64 + 1
= 987/1024 and cubic(9/8) = -0.5 * 729/512 + 2.5 * 81/64 - 4.5 + 2 = -49/1024; the others
are 745, 399, 93 (|x| < 1) and -75, -45, -7 (|x| > 1), over 1024. Their sum over all 16
taps is 2 * 2048 / 1024 = 4, so the normalised weights are the integers below over 4096.
Borders are mirrored half-sample symmetrically (MATLAB's ``[1..n, n..1]``), which is
``np.pad(mode="symmetric")``.

A second, independent reference is BasicSR's MATLAB-like ``imresize``
(``basicsr/utils/matlab_functions.py``, float32), where BasicSR is installed.
"""

import importlib.util

import cv2
import numpy as np
import pytest
from basicsr_arch import require_basicsr_root

from dalign_nb.data import bd_degrade, imresize

HAND_X4 = np.array([-7, -45, -75, -49, 93, 399, 745, 987, 987, 745, 399, 93, -49, -75, -45, -7]) / 4096.0


def hand_downscale_x4(img: np.ndarray) -> np.ndarray:
    """out[i, j] = sum_ab w_a w_b pad[4i + 2 + a, 4j + 2 + b] with 8 mirrored pixels of padding."""
    pad = np.pad(img.astype(np.float64), ((8, 8), (8, 8), (0, 0)), mode="symmetric")
    h, w = img.shape[0] // 4, img.shape[1] // 4
    out = np.zeros((h, w, img.shape[2]))
    for i in range(h):
        for j in range(w):
            patch = pad[4 * i + 2 : 4 * i + 18, 4 * j + 2 : 4 * j + 18]
            out[i, j] = np.einsum("a,b,abc->c", HAND_X4, HAND_X4, patch)
    return out


@pytest.fixture(scope="module")
def basicsr_imresize():
    """BasicSR's ``imresize``, loaded from its file (the package's ``__init__`` fails on current
    torchvision; this module needs only math, numpy and torch)."""
    path = require_basicsr_root() / "utils" / "matlab_functions.py"  # fails under CI=true without it
    module_spec = importlib.util.spec_from_file_location("basicsr_matlab_functions", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.imresize


@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 1 / 2, 2, 4])
def test_float_matches_basicsr_matlab_imresize(basicsr_imresize, scale):
    """Down (antialiased) and up, odd sizes whose scaled size MATLAB rounds up; BasicSR is float32."""
    img = np.random.default_rng(4).random((37, 29, 3))
    ours = imresize(img, scale)
    ref = basicsr_imresize(img.astype(np.float32), scale).astype(np.float64)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-6, rtol=0)


def test_float_matches_hand_computed_matlab_weights():
    img = np.random.default_rng(0).random((36, 28, 3))
    np.testing.assert_allclose(imresize(img, 0.25), hand_downscale_x4(img), atol=1e-12, rtol=0)


def test_uint8_within_one_grey_level_of_matlab():
    img = np.random.default_rng(1).integers(0, 256, (40, 32, 3), dtype=np.uint8)
    out = imresize(img, 0.25)
    ref = np.clip(np.round(hand_downscale_x4(img)), 0, 255)
    assert out.dtype == np.uint8 and out.shape == (10, 8, 3)
    assert np.abs(out.astype(int) - ref).max() <= 1
    assert (out == ref).mean() > 0.8  # rounding between the two passes moves few pixels (90% here)


def test_opencv_kernels_are_not_matlab_bicubic():
    img = np.random.default_rng(2).integers(0, 256, (40, 32, 3), dtype=np.uint8)
    ref = np.clip(np.round(hand_downscale_x4(img)), 0, 255)
    for interp in (cv2.INTER_CUBIC, cv2.INTER_AREA):
        cv = cv2.resize(img, (8, 10), interpolation=interp).astype(int)
        assert np.abs(cv - ref).max() > 1


def test_enlarging_uses_the_plain_cubic_kernel():
    # x4 up: output o sits at input (o + 0.5) / 4 - 0.5; o = 4k + 2 gives k + 1/8, taps k-1..k+2
    # at distances 9/8, 1/8, 7/8, 15/8: (-49, 987, 93, -7) / 1024 by the formulas above.
    row = np.random.default_rng(3).random((1, 12))
    up = imresize(row, 4)
    assert up.shape == (4, 48)
    for k in range(1, 10):
        expected = np.dot([-49, 987, 93, -7], row[0, k - 1 : k + 3]) / 1024
        assert up[0, 4 * k + 2] == pytest.approx(expected, abs=1e-12)


def test_grey_and_constant_images():
    grey = np.full((17, 9), 77, np.uint8)
    out = imresize(grey, 0.25)
    assert out.shape == (5, 3) and (out == 77).all()  # ceil(17/4) x ceil(9/4), as MATLAB
    assert imresize(np.float32(grey) / 255, 0.25).dtype == np.float32


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="HxW or HxWxC"):
        imresize(np.zeros((2, 4, 4, 3)), 0.25)
    with pytest.raises(ValueError, match="scale"):
        imresize(np.zeros((8, 8)), 0)


def test_bd_is_gaussian_blur_then_decimation():
    # a single bright pixel at (8, 8): BD keeps pixel (2, 2) = the Gaussian's centre weight
    img = np.zeros((32, 32))
    img[8, 8] = 1.0
    g = np.exp(-np.arange(-6, 7) ** 2 / (2 * 1.6**2))
    g /= g.sum()
    out = bd_degrade(img)
    assert out.shape == (8, 8)
    assert out[2, 2] == pytest.approx(g[6] ** 2, rel=1e-9)
    assert out[2, 3] == pytest.approx(g[6] * g[2], rel=1e-9)  # 4 px to the right: tap 6 - 4
    assert bd_degrade(np.full((16, 16, 3), 200, np.uint8)).dtype == np.uint8
