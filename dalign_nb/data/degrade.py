"""Degradations that make LR frames from HR ones: BI (MATLAB bicubic x4) and BD (blur + decimate).

The VSR literature builds its test sets with MATLAB's ``imresize(img, 1/4, 'bicubic')``
(REDS4's ``train_sharp_bicubic``, Vid4 ``BIx4``, Vimeo-90K-T); Sec. A.1 of the paper
inherits those sets. ``imresize`` below re-implements MATLAB's algorithm (The MathWorks,
``imresize.m``: Keys' cubic kernel with a = -0.5, widened by 1/scale when shrinking so
that it antialiases, half-sample symmetric borders); OpenCV's ``INTER_CUBIC`` (a = -0.75,
no antialiasing) and ``INTER_AREA`` give different images and are not substitutes.

BD follows DUF (Jo et al. 2018) as BasicSR's ``duf_downsample``: a 13x13 Gaussian with
sigma = 0.4 * scale = 1.6, reflect borders, then every 4th pixel starting at 0.

Either may be followed by noise, ``"bi+n10"``: white Gaussian noise of standard deviation 10
(on 0-255) added to every LR pixel, then rounded to 8 bits again, drawn from a seed per frame so
that a clip's noisy frames are the same every time they are made. The paper adds no noise (a
departure where used): its only purpose here is a setting in which a neighbour frame carries
what the centre frame lacks at our scale (an independent draw of the noise), so that a model
has reason to align it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["DEGRADATIONS", "add_noise", "bd_degrade", "bi_degrade", "check_degradation", "cubic", "degrade",
           "imresize", "parse_degradation", "resize_weights"]


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


DEGRADATIONS = ("bi", "bd")  # the kinds; either may take noise: "bi+n10" (see the module)


def parse_degradation(name: str) -> tuple[str, float]:
    """``(kind, noise sigma on 0-255)`` of a degradation name: ``"bi"`` -> ``("bi", 0.0)``,
    ``"bd+n5"`` -> ``("bd", 5.0)``; anything else is refused, naming the forms."""
    kind, sep, noise = str(name).partition("+n")
    try:
        sigma = float(noise) if sep else 0.0
    except ValueError:
        sigma = -1.0
    if kind not in DEGRADATIONS or not math.isfinite(sigma) or sigma < 0 or (sep and sigma == 0):
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, or one of them with noise of a "
                         f"positive standard deviation on 0-255 such as 'bi+n10'; got {name!r}")
    return kind, sigma


def check_degradation(name: str) -> str:
    """``name`` if ``parse_degradation`` reads it, else its ``ValueError``."""
    parse_degradation(name)
    return name


def add_noise(img: np.ndarray, sigma: float, seed) -> np.ndarray:
    """``img`` (uint8, or float on 0-1) plus white Gaussian noise of standard deviation ``sigma``
    on 0-255, from ``numpy.random.default_rng(seed)``; uint8 in gives rounded, clipped uint8 out,
    float gives float clipped to [0, 1]."""
    img = _check_image(img)
    noise = np.random.default_rng(seed).normal(0.0, sigma, img.shape)
    if img.dtype == np.uint8:
        return _saturate_uint8(img.astype(np.float64) + noise)
    return np.clip(img + noise / 255.0, 0.0, 1.0).astype(img.dtype)


def degrade(img: np.ndarray, degradation: str = "bi", scale: int = 4, noise_seed=None) -> np.ndarray:
    """``bi_degrade`` or ``bd_degrade`` by name (``parse_degradation``), as ``data.degradation``
    says, then ``add_noise`` from ``noise_seed`` where the name asks for noise (a noisy
    degradation without a seed is refused: the frames would change every time they are made)."""
    kind, sigma = parse_degradation(degradation)
    out = (bi_degrade if kind == "bi" else bd_degrade)(img, scale)
    if sigma:
        if noise_seed is None:
            raise ValueError(f"degradation {degradation!r} adds noise: give noise_seed (one per frame)")
        out = add_noise(out, sigma, noise_seed)
    return out
