"""Degradations that make LR frames from HR ones: BI (MATLAB bicubic x4) and BD (blur + decimate).

The VSR literature builds its test sets with MATLAB's ``imresize(img, 1/4, 'bicubic')``
(REDS4's ``train_sharp_bicubic``, Vid4 ``BIx4``, Vimeo-90K-T); Sec. A.1 of the paper
inherits those sets. ``imresize`` below re-implements MATLAB's algorithm (The MathWorks,
``imresize.m``: Keys' cubic kernel with a = -0.5, widened by 1/scale when shrinking so
that it antialiases, half-sample symmetric borders); OpenCV's ``INTER_CUBIC`` (a = -0.75,
no antialiasing) and ``INTER_AREA`` give different images and are not substitutes.

BD follows DUF (Jo et al. 2018) as BasicSR's ``duf_downsample``: a 13x13 Gaussian with
sigma = 0.4 * scale = 1.6, reflect borders, then every 4th pixel starting at 0.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["DEGRADATIONS", "bd_degrade", "bi_degrade", "cubic", "degrade", "imresize", "resize_weights"]


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' (1981) cubic convolution kernel with a = -0.5, as MATLAB's ``imresize``.

    ``|x| <= 1: 1.5|x|^3 - 2.5|x|^2 + 1``;  ``1 < |x| <= 2: -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2``.
    """
    ax = np.abs(x)
    inner = 1.5 * ax**3 - 2.5 * ax**2 + 1
    outer = -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return np.where(ax <= 1, inner, np.where(ax <= 2, outer, 0.0))


def resize_weights(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """MATLAB ``imresize``'s 1-D resampling as a dense matrix ``(out_len, in_len)``.

    ``out = W @ signal``. Output pixel x (1-based) sits at input coordinate
    ``u = x / scale + 0.5 * (1 - 1 / scale)``; when shrinking with antialiasing the kernel is
    ``scale * cubic(scale * t)`` (width 4 / scale); weights are normalised to sum to 1 and
    indices outside the signal are mirrored (``[1..n, n..1]``), as ``imresize.m``'s
    ``contributions``.
    """
    shrink = scale < 1 and antialias
    width = 4.0 / scale if shrink else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None]  # (out_len, taps), 1-based
    dist = u[:, None] - idx
    w = scale * cubic(scale * dist) if shrink else cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    src = mirror[np.mod(idx - 1, 2 * in_len).astype(np.int64)]
    mat = np.zeros((out_len, in_len))
    np.add.at(mat, (np.repeat(np.arange(out_len), taps), src.ravel()), w.ravel())
    return mat


def _check_image(img, name: str = "img") -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
        shape = getattr(img, "shape", type(img).__name__)
        raise ValueError(f"{name} must be a numpy array of shape HxW or HxWxC, got {shape}")
    return img


def _saturate_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def imresize(img: np.ndarray, scale: float, antialias: bool = True) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` on a numpy ``HxW`` or ``HxWxC`` array.

    The output size is ``ceil(scale * size)`` as MATLAB's. Rows are resized first, then
    columns (MATLAB's order for equal scales). A uint8 image is rounded and saturated to
    uint8 after each pass, as MATLAB's ``imresizemex`` does for integer classes, and comes
    back uint8; a float image is resized in float64 and comes back in its own dtype,
    unclipped (bicubic overshoots).
    """
    img = _check_image(img)
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    h, w = img.shape[:2]
    out_h, out_w = math.ceil(scale * h - 1e-9), math.ceil(scale * w - 1e-9)
    rows = resize_weights(h, out_h, scale, antialias)  # (out_h, h)
    cols = resize_weights(w, out_w, scale, antialias)  # (out_w, w)
    is_uint8 = img.dtype == np.uint8
    x = np.tensordot(rows, img.astype(np.float64), axes=(1, 0))  # (out_h, w[, C])
    if is_uint8:
        x = np.round(np.clip(x, 0, 255))
    x = np.moveaxis(np.tensordot(cols, x, axes=(1, 1)), 0, 1)  # (out_h, out_w[, C])
    return _saturate_uint8(x) if is_uint8 else x.astype(img.dtype if img.dtype.kind == "f" else np.float64)


def bi_degrade(img: np.ndarray, scale: int = 4) -> np.ndarray:
    """BI: MATLAB bicubic downsampling by ``scale`` (the paper's REDS4 / Vimeo-90K-T setting)."""
    return imresize(img, 1.0 / scale)


def bd_degrade(img: np.ndarray, scale: int = 4, sigma: float = 1.6) -> np.ndarray:
    """BD: Gaussian blur (13x13, sigma 1.6) then keep every ``scale``-th pixel (DUF / BasicSR).

    uint8 in gives rounded uint8 out; float gives float.
    """
    img = _check_image(img)
    blurred = cv2.GaussianBlur(img.astype(np.float64), (13, 13), sigma, borderType=cv2.BORDER_REFLECT_101)
    out = blurred[::scale, ::scale]  # (H/scale, W/scale[, C])
    return _saturate_uint8(out) if img.dtype == np.uint8 else out.astype(img.dtype)


DEGRADATIONS = ("bi", "bd")


def degrade(img: np.ndarray, degradation: str = "bi", scale: int = 4) -> np.ndarray:
    """``bi_degrade`` or ``bd_degrade`` by name (``DEGRADATIONS``), as ``data.degradation`` says."""
    if degradation not in DEGRADATIONS:
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {degradation!r}")
    return (bi_degrade if degradation == "bi" else bd_degrade)(img, scale)
