"""The paper's own numbers, to show beside ours (Chan et al., AAAI 2021).

All PSNRs are in dB on RGB channels, x4 super-resolution. Models are EDVR-M unless said.
"""

from __future__ import annotations

# Table 1 (Sec. 4.2): PSNR on REDS4 of EDVR-M with a DCN and with the decomposition
# (N warps + 1x1 conv), keyed by (G groups, k kernel size).
TABLE1_REDS4 = {
    "DCN": {(1, 1): 29.979, (1, 3): 30.199, (8, 1): 30.183, (8, 3): 30.264},
    "decomposition": {(1, 1): 29.992, (1, 3): 30.240, (8, 1): 30.179, (8, 3): 30.231},
}

# Table 2 (Sec. 4.2): PSNR on Vimeo-90K-T against the number of offsets N.
TABLE2_VIMEO90K_T = {
    "TDAN": {1: 33.313, 9: 33.483, 25: 33.540},
    "flow-based (TOFlow-like, N SPyNets)": {1: 32.835, 2: 32.973, 3: 33.017},
}

# Table 3 (Sec. 4.3): EDVR-L with and without the offset-fidelity loss.
TABLE3 = {
    "without offset-fidelity loss": {"REDS4": 28.753, "Vimeo-90K-T": 33.632},
    "with offset-fidelity loss": {"REDS4": 30.480, "Vimeo-90K-T": 35.223},
}

# Table 4 (A.3): the G = N = 1 flow-based baseline warping images or features, REDS4.
TABLE4_REDS4 = {"image warping": 29.155, "feature warping": 29.992}

# Numbers stated in the text.
FIG5_SHARE_WITHIN_1PX = 0.80  # "over 80% of the estimations" (G = N = 1 offsets vs PWC-Net flow)
FIG9_PSNR_PLATEAU = 30.23  # PSNR saturates at about 30.23 dB as N grows (G = 1)
FIG9_PEARSON_R = 0.9418  # PSNR vs offset diversity, six data points
SEC42_G1_N1_TO_N5_GAIN = 0.25  # dB, "with only 84K more parameters" (A.4)
A4_N1_TO_N5_EXTRA_PARAMS = 84_000  # the parameters that N 1 -> 5 costs at G = 1 (A.4)
A4_G_GAIN_MAX = 0.19  # dB, "the PSNR improves with G, with up to 0.19 dB" (A.4, Fig. 16 left)
# Fig. 16 right (A.2): PSNR gain over N = 1 per million parameters, at N = 5 and N = 25.
A2_GAIN_PER_M_PARAMS = {5: 2.89, 25: 0.42}
SEC43_OVERFLOW_ITER = 300_000  # Fig. 10(a): without the loss, the training loss rises at about 300K


def difference(table: dict, better: str, worse: str, column=None) -> float:
    """A difference the paper states between two rows of one of its tables (``better`` - ``worse``),
    e.g. ``difference(TABLE4_REDS4, "feature warping", "image warping")`` = +0.837 dB."""
    a, b = table[better], table[worse]
    return (a[column] - b[column]) if column is not None else a - b


def table2_gain(model: str) -> float:
    """Table 2: PSNR of the largest N minus N = 1 for one model (+0.227 TDAN, +0.182 flow-based)."""
    row = TABLE2_VIMEO90K_T[model]
    return row[max(row)] - row[1]


def format_table(rows: list[list], headers: list[str]) -> str:
    """A small Markdown table (what the notebooks print beside their own numbers)."""
    cells = [[str(h) for h in headers]] + [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r]
                                            for r in rows]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "|".join(" --- " for _ in headers) + "|")
    return "\n".join(lines)

# A.5 (Eq. 7, Fig. 17-18): DCNv2's modulation masks. The text states trends, no numbers: an
# offset's mean mask is "inversely proportional to the average difference between the offsets
# and optical flow" (a negative correlation; no r given), and "when the number of offsets is
# large, a significant proportion of the masks has small values (≈ 0)" (no share given).
A5_MASK_VS_DISTANCE_SIGN = -1  # the sign of Fig. 17's trend: far from the flow -> small mask
A5_SMALL_MASK_VALUE = 0.0  # "small values (≈ 0)"
