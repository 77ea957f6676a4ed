"""EDVR: BasicSR key compatibility and outputs, aux structure, presets, training helpers.

The frozen list ``tests/data/basicsr_edvr_params.json`` holds the parameter names and
shapes of BasicSR's EDVR-M and EDVR-L, so key compatibility is tested without BasicSR.
Where BasicSR is installed (``pip install --no-deps basicsr==1.4.2 ...``), its real
``edvr_arch`` is loaded and outputs are compared; regenerate the list with
``python tests/test_edvr.py``.
"""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from basicsr_arch import load_basicsr_edvr_arch, require_basicsr_edvr

from dalign_nb.alignment import ALIGNMENT_KINDS, AlignmentConfig
from dalign_nb.models import (
    EDVR,
    LEVELS,
    EDVRConfig,
    build_edvr,
    edvr_config,
    flow_pyramid,
    load_basicsr_checkpoint,
    read_basicsr_state_dict,
)
from dalign_nb.ops import DecomposedDeformConv2d, DeformConv2d, group_warp

# BasicSR's DCNv2Pack compares torchvision versions with distutils' LooseVersion
pytestmark = pytest.mark.filterwarnings("ignore:distutils Version classes are deprecated")

FROZEN = Path(__file__).parent / "data" / "basicsr_edvr_params.json"
BASICSR_SIZES = {"edvr-m": dict(num_feat=64, num_reconstruct_block=10),
                 "edvr-l": dict(num_feat=128, num_reconstruct_block=40)}


@pytest.fixture(scope="module")
def basicsr_edvr():
    return require_basicsr_edvr()


def _shapes(model):
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def _randomise_offset_convs(model, seed=0):
    """Non-zero offset branches (BasicSR initialises them to zero), offsets of about a pixel."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "conv_offset" in name:
                p.normal_(0, 0.02 if name.endswith("weight") else 1.0)


# ------------------------------------------------------------------ key compatibility, no basicsr


@pytest.mark.parametrize("preset", ["edvr-m", "edvr-l"])
def test_state_dict_is_basicsr_frozen_list(preset):
    frozen = json.loads(FROZEN.read_text())["models"][preset]
    model = build_edvr(preset)
    assert _shapes(model) == frozen["params"]
    counts = {"edvr-m": 3_300_131, "edvr-l": 20_633_827}  # BasicSR's numbers of parameters
    assert sum(p.numel() for p in model.parameters()) == counts[preset]
    assert sum(torch.Size(shape).numel() for _, shape in frozen["params"]) == counts[preset]


def test_dcnv1_and_decomposed_keep_basicsr_names():
    frozen = json.loads(FROZEN.read_text())["models"]["edvr-m"]["params"]
    names = [k for k, _ in frozen]
    v1 = build_edvr("edvr-m", alignment=AlignmentConfig(modulated=False))
    assert [k for k, _ in _shapes(v1)] == names  # same names, conv_offset 2/3 as wide
    assert tuple(v1.pcd_align.dcn_pack["l1"].conv_offset.weight.shape) == (2 * 8 * 9, 64, 3, 3)
    decomposed = build_edvr("edvr-m", alignment=AlignmentConfig("decomposed", num_offsets=5, modulated=False))
    assert {k for k, _ in _shapes(decomposed)} == set(names)


# ------------------------------------------------------------------ against BasicSR itself


@pytest.mark.parametrize("preset", ["edvr-m", "edvr-l"])
def test_frozen_list_is_what_basicsr_builds(basicsr_edvr, preset):
    frozen = json.loads(FROZEN.read_text())["models"][preset]
    assert _shapes(basicsr_edvr.EDVR(**frozen["kwargs"])) == frozen["params"]


def test_basicsr_edvr_m_checkpoint_loads_strict_and_gives_the_same_output(basicsr_edvr, tmp_path):
    torch.manual_seed(0)  # its random weights, whatever the tests before it drew
    reference = basicsr_edvr.EDVR().eval()  # EDVR-M
    _randomise_offset_convs(reference)
    sd = reference.state_dict()
    x = torch.rand(1, 5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
    for i, ckpt in enumerate([{"params": sd}, {"params_ema": sd}, sd]):
        torch.save(ckpt, tmp_path / f"edvr_m_{i}.pth")
        model = load_basicsr_checkpoint(build_edvr("edvr-m"), tmp_path / f"edvr_m_{i}.pth").eval()
        for backend, tol in (("decomposed", 1e-5), ("torchvision", 1e-6)):
            model.set_backend(backend)
            with torch.no_grad():
                out, aux = model(x, return_aux=True)
            assert (out - expected).abs().max() < tol, backend
    assert aux["offsets"]["l1"].abs().mean() > 0.5  # offsets of pixels: not the zero-offset case
    residual = expected - F.interpolate(x[:, 2], scale_factor=4, mode="bilinear", align_corners=False)
    assert residual.abs().mean() > 1e-2  # the network part of the output is compared, not just the base


@pytest.mark.parametrize("kwargs", [
    dict(with_tsa=False),
    dict(with_predeblur=True),
    dict(with_predeblur=True, hr_in=True),
    dict(num_frame=3, center_frame_idx=0),
])
def test_basicsr_variants_match(basicsr_edvr, kwargs):
    size = dict(num_feat=8, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1)
    reference = basicsr_edvr.EDVR(**size, **kwargs).eval()
    _randomise_offset_convs(reference)
    model = EDVR(**size, **kwargs).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    t, hw = kwargs.get("num_frame", 5), 32 if kwargs.get("hr_in") else 8
    x = torch.rand(2, t, 3, hw, hw, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)


def test_aux_records_what_basicsr_computes(basicsr_edvr):
    """``aux`` holds, per frame and level, the offsets, masks and aligned features that BasicSR's
    own modules compute, read off its EDVR with forward hooks (frames in order, as it loops)."""
    size = dict(num_feat=8, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1)
    reference = basicsr_edvr.EDVR(**size).eval()
    _randomise_offset_convs(reference)
    model = EDVR(**size).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    seen = {key: {level: [] for level in LEVELS} for key in ("offsets", "masks", "aligned")}
    seen["aligned_feat"] = []

    def on_conv_offset(level):
        def hook(module, inputs, out):
            o1, o2, mask = torch.chunk(out, 3, dim=1)  # DCNv2Pack.forward's split
            seen["offsets"][level].append(torch.cat((o1, o2), dim=1))
            seen["masks"][level].append(torch.sigmoid(mask))
        return hook

    pcd = reference.pcd_align
    packs = {**{level: pcd.dcn_pack[level] for level in ("l3", "l2", "l1")}, "cascade": pcd.cas_dcnpack}
    for level, pack in packs.items():
        pack.conv_offset.register_forward_hook(on_conv_offset(level))
        # cloned: BasicSR's in-place LeakyReLU later overwrites the L3 output
        pack.register_forward_hook(lambda m, i, out, level=level: seen["aligned"][level].append(out.clone()))
    pcd.register_forward_hook(lambda m, i, out: seen["aligned_feat"].append(out.clone()))
    x = torch.rand(2, 5, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference(x)
        out, aux = model(x, return_aux=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    for key in ("offsets", "masks", "aligned"):
        for level in LEVELS:
            assert len(seen[key][level]) == 5
            torch.testing.assert_close(aux[key][level], torch.stack(seen[key][level], dim=1),
                                       atol=1e-5, rtol=1e-5, msg=lambda m, k=key, lv=level: f"{k} {lv}: {m}")
    torch.testing.assert_close(aux["aligned_feat"], torch.stack(seen["aligned_feat"], dim=1),
                               atol=1e-5, rtol=1e-5)
    assert aux["offsets"]["l1"].abs().mean() > 0.5  # offsets of pixels: not the zero-offset case


# ------------------------------------------------------------------ our additions


@pytest.mark.parametrize("kind", ALIGNMENT_KINDS)
def test_aux_structure_for_every_alignment(kind):
    torch.manual_seed(0)
    model = build_edvr("tiny", alignment=AlignmentConfig(kind, num_offsets=3))
    b, t, h, w = 2, 5, 8, 12
    x = torch.rand(b, t, 3, h, w)
    flows = torch.randn(b, t, 2, h, w) if kind == "flow_guided" else None
    out, aux = model(x, flows, return_aux=True)
    assert tuple(out.shape) == (b, 3, 4 * h, 4 * w)
    g, n = {"dcn": (2, 9), "decomposed": (2, 3), "flow": (1, 1), "image": (1, 1), "flow_guided": (2, 9)}[kind]
    sizes = {"l3": (h // 4, w // 4), "l2": (h // 2, w // 2), "l1": (h, w), "cascade": (h, w)}
    assert set(aux) == {"offsets", "masks", "aligned", "aligned_feat"} and tuple(aux["offsets"]) == LEVELS
    for level, hw in sizes.items():
        assert tuple(aux["offsets"][level].shape) == (b, t, 2 * g * n, *hw)
        assert tuple(aux["aligned"][level].shape) == (b, t, 16, *hw)
        mask = aux["masks"][level]
        assert mask is None if kind in ("flow", "image") else tuple(mask.shape) == (b, t, g * n, *hw)
    assert tuple(aux["aligned_feat"].shape) == (b, t, 16, h, w)
    if kind == "flow_guided":  # zero-initialised residues: L1 offsets are the flow
        torch.testing.assert_close(aux["offsets"]["l1"][:, :, :2], flows.flip(2))
    out.mean().backward()  # the zero-initialised offset branch learns
    assert model.pcd_align.dcn_pack["l1"].conv_offset.weight.grad.abs().sum() > 0


def test_fusion_only_freezes_everything_else():
    model = build_edvr("tiny")
    model.set_fusion_only(True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("fusion.")}
    assert sum(p.numel() for p in model.fusion_parameters()) == sum(
        p.numel() for n, p in model.named_parameters() if n in trainable)
    model(torch.rand(1, 5, 3, 8, 8)).mean().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)
    assert all(p.grad is not None for p in model.fusion_parameters())
    model.set_fusion_only(False)
    assert all(p.requires_grad for p in model.parameters())


def test_set_backend():
    dcn = build_edvr("tiny")
    dcn.set_backend("torchvision")
    backends = {m.backend for m in dcn.modules() if isinstance(m, DeformConv2d)}
    assert backends == {"torchvision"}
    decomposed = build_edvr("tiny", alignment="decomposed")
    decomposed.set_backend("torchvision")  # no kernel grid: stays on its own backend
    kept = {m.backend for m in decomposed.modules() if isinstance(m, DecomposedDeformConv2d)}
    assert kept == {"decomposed"}
    with pytest.raises(ValueError, match="backend"):
        dcn.set_backend("cuda")


def test_flow_pyramid_halves_magnitude():
    flows = torch.zeros(1, 5, 2, 8, 8)
    flows[:, :, 0] = 4.0
    l1, l2, l3 = flow_pyramid(flows)
    assert tuple(l3.shape) == (1, 5, 2, 2, 2)
    assert l2[:, :, 0].unique().tolist() == [2.0] and l3[:, :, 0].unique().tolist() == [1.0]
    assert l2[:, :, 1].abs().max() == 0


def test_bad_input_and_checkpoint(tmp_path):
    model = build_edvr("tiny")
    with pytest.raises(ValueError, match="T=5"):
        model(torch.rand(1, 3, 3, 8, 8))
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.rand(1, 5, 3, 8, 10))
    with pytest.raises(ValueError, match="flows must have shape"):
        model(torch.rand(1, 5, 3, 8, 8), torch.zeros(1, 5, 2, 4, 4))
    with pytest.raises(ValueError, match="needs flows"):
        build_edvr("tiny", alignment="flow_guided")(torch.rand(1, 5, 3, 8, 8))
    with pytest.raises(ValueError, match="hr_in"):
        EDVR(hr_in=True)
    with pytest.raises(ValueError, match="preset"):
        edvr_config("edvr-xl")
    torch.save({"iter": 3, "params": {"a": 1}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a state dict"):
        read_basicsr_state_dict(tmp_path / "bad.pth")
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"params": sd}, tmp_path / "ddp.pth")
    load_basicsr_checkpoint(build_edvr("tiny"), tmp_path / "ddp.pth")  # DDP prefix stripped, strict


def _write_frozen_list():
    """Regenerate ``tests/data/basicsr_edvr_params.json`` from BasicSR (one parameter a line)."""
    module, reason = load_basicsr_edvr_arch()
    if module is None:
        raise SystemExit(reason)
    lines = ['{"source": "state_dict() of basicsr==1.4.2 basicsr.archs.edvr_arch.EDVR(**kwargs)",',
             ' "models": {']
    for i, (preset, kwargs) in enumerate(BASICSR_SIZES.items()):
        params = _shapes(module.EDVR(**kwargs))
        lines.append(f'  "{preset}": {{"kwargs": {json.dumps(kwargs)}, "params": [')
        lines += [f"   {json.dumps(p)}{',' if j < len(params) - 1 else ''}" for j, p in enumerate(params)]
        lines.append("  ]}" + ("," if i < len(BASICSR_SIZES) - 1 else ""))
    lines.append(" }}")
    FROZEN.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    _write_frozen_list()


# --------------------------------------------------------------------------- residual offsets (ours)


@pytest.mark.parametrize("kind", ["flow", "dcn", "decomposed", "image"])
def test_residual_offsets_carry_the_coarse_motion_to_l1(kind):
    """A constant offset predicted at L3 (quarter size) reaches L2 doubled and L1 x4 when the
    finer levels predict no residual; EDVR's own PCD (residual_offsets=False) passes only the
    offset feature, so its finer levels predict nothing from it here."""
    align = AlignmentConfig(kind=kind, num_offsets=3, kernel_size=3)
    results = {}
    for residual in (True, False):
        torch.manual_seed(0)
        model = EDVR(num_feat=16, num_frame=3, deformable_groups=1, num_extract_block=1,
                     num_reconstruct_block=1, alignment=align, residual_offsets=residual)
        x = torch.rand(1, 3, 3, 16, 16)
        pairs = model(x, return_aux=True)[1]["offsets"]["l3"].shape[2] // 2  # G*N
        with torch.no_grad():  # the offset channels come first (BasicSR's o1, o2, mask split)
            bias = model.pcd_align.dcn_pack["l3"].conv_offset.bias
            bias[: 2 * pairs].view(pairs, 2).copy_(torch.tensor([0.25, -0.5]))  # (dy, dx)
        _, aux = model(x, return_aux=True)
        results[residual] = aux["offsets"]
    for level, factor in (("l3", 1), ("l2", 2), ("l1", 4)):
        off = results[True][level][0, 0].unflatten(0, (-1, 2))  # (pairs, 2, h, w)
        torch.testing.assert_close(off[:, 0], torch.full_like(off[:, 0], 0.25 * factor))
        torch.testing.assert_close(off[:, 1], torch.full_like(off[:, 1], -0.5 * factor))
    assert results[False]["l1"].abs().max() == 0


def test_residual_offsets_refuse_flow_guided_alignment():
    with pytest.raises(ValueError, match="flow_guided"):
        EDVRConfig(alignment=AlignmentConfig(kind="flow_guided"), residual_offsets=True)


# --------------------------------------------------------------------------- warp-then-estimate (ours)


def _moved(image, dy: int, dx: int):
    """``image`` moved by (dy, dx): ``out(p + (dy, dx)) = image(p)`` (wrapping around), so the
    flow from ``image`` to ``out`` is (dy, dx) and ``out`` sampled at ``p + (dy, dx)`` is ``image``."""
    return torch.roll(image, shifts=(dy, dx), dims=(-2, -1))


@pytest.mark.parametrize("groups,num_offsets", [(1, 1), (2, 3)])
def test_group_warp_by_the_exact_integer_motion_gives_the_reference(groups, num_offsets):
    """Each group's channels move by the group's mean offset: a neighbour that is the reference
    moved by an integer motion per group comes back as the reference (away from the wrap)."""
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, 4 * groups, 16, 16, generator=g, dtype=torch.float64)
    motions = [(1, -2), (-3, 2)][:groups]
    nbr = torch.cat([_moved(ref[:, 4 * i:4 * (i + 1)], *m) for i, m in enumerate(motions)], 1)
    offset = torch.zeros(1, 2 * groups * num_offsets, 16, 16, dtype=torch.float64)
    spread = torch.linspace(-1.5, 1.5, num_offsets, dtype=torch.float64)
    spread -= spread.mean()  # the N offsets spread around the motion, their mean on it
    for i, (dy, dx) in enumerate(motions):
        for n in range(num_offsets):
            offset[:, 2 * (i * num_offsets + n)] = dy + spread[n]
            offset[:, 2 * (i * num_offsets + n) + 1] = dx - spread[n]
    warped = group_warp(nbr, offset, num_offsets)
    torch.testing.assert_close(warped[..., 3:-3, 3:-3], ref[..., 3:-3, 3:-3], rtol=0, atol=1e-12)
    assert (group_warp(nbr, torch.zeros_like(offset), num_offsets) - ref)[..., 3:-3, 3:-3].abs().max() > 0.1


def _wte_model(**kw):
    torch.manual_seed(0)
    return EDVR(num_feat=8, num_frame=3, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1,
                alignment=AlignmentConfig(kind="flow"), residual_offsets=True, **kw).double()


def test_warp_then_estimate_shows_the_finer_level_the_neighbour_moved_by_the_coarser_offsets():
    """Set L3 to predict the exact motion (a constant offset of 1 px at L3 = 2 px at L2): the
    offset branch of L2 then compares the reference with a neighbour that equals it (interior),
    while without warp-then-estimate it sees the moved neighbour. The alignment still samples
    the unwarped neighbour at base + prediction: the offsets are those of residual_offsets."""
    model = _wte_model(warp_then_estimate=True)
    pcd = model.pcd_align
    g = torch.Generator().manual_seed(1)
    ref = [torch.rand(1, 8, 32 // s, 32 // s, generator=g, dtype=torch.float64) for s in (1, 2, 4)]
    nbr = [_moved(r, 0, 4 // s) for r, s in zip(ref, (1, 2, 4))]  # L1: 4 px, L2: 2 px, L3: 1 px
    with torch.no_grad():
        pcd.dcn_pack["l3"].conv_offset.bias.copy_(torch.tensor([0.0, 1.0]))  # (dy, dx) = (0, 1) at L3
    seen = {}
    hooks = [pcd.offset_conv1[lvl].register_forward_pre_hook(
        lambda m, args, lvl=lvl: seen.__setitem__(lvl, args[0][:, :8].clone())) for lvl in ("l2", "l1")]
    _, records = pcd(nbr, ref)
    for lvl, r in (("l2", ref[1]), ("l1", ref[0])):
        torch.testing.assert_close(seen[lvl][..., 4:-4, 4:-4], r[..., 4:-4, 4:-4], rtol=0, atol=1e-12)
    torch.testing.assert_close(records["l1"].offset[:, 1], torch.full_like(records["l1"].offset[:, 1], 4.0))
    pcd.warp_then_estimate = False  # the same weights, EDVR's estimate from the unwarped neighbour
    pcd(nbr, ref)
    assert (seen["l2"] - ref[1])[..., 4:-4, 4:-4].abs().max() > 0.1
    for h in hooks:
        h.remove()


def test_warp_then_estimate_gradients_match_finite_differences():
    """Through the warp of the neighbour by the coarser offsets too: the offset branches are
    given non-zero weights so that what the finer levels see moves their offsets."""
    model = _wte_model(warp_then_estimate=True)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for level in ("l3", "l2", "l1"):
            conv = model.pcd_align.dcn_pack[level].conv_offset
            conv.weight.copy_(0.05 * torch.randn(conv.weight.shape, generator=g, dtype=torch.float64))
            conv.bias.copy_(torch.tensor([0.3, -0.45]))  # non-integer: away from the kinks of sampling
    ref = [torch.rand(1, 8, 8 // s, 8 // s, generator=g, dtype=torch.float64) for s in (1, 2, 4)]
    nbr = [torch.rand(r.shape, generator=g, dtype=torch.float64).requires_grad_(True) for r in ref]

    def f(n1, n2, n3):
        return model.pcd_align([n1, n2, n3], ref)[0]

    assert torch.autograd.gradcheck(f, tuple(nbr), eps=1e-6, atol=1e-6, fast_mode=True)


def test_warp_then_estimate_is_identity_at_zero_offsets_and_off_by_default():
    """At initialisation every offset is 0, so the warp is the identity and the model with
    warp-then-estimate computes what the model without it computes, from the same weights;
    EDVR's default (and BasicSR's layout) has it off, and it adds no parameter."""
    assert not EDVRConfig().warp_then_estimate
    on, off = _wte_model(warp_then_estimate=True), _wte_model()
    assert [k for k in on.state_dict()] == [k for k in off.state_dict()]
    off.load_state_dict(on.state_dict())
    x = torch.rand(1, 3, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(on(x), off(x), rtol=0, atol=1e-12)


def test_warp_then_estimate_is_refused_where_it_cannot_apply():
    with pytest.raises(ValueError, match="flow_guided"):
        EDVRConfig(alignment=AlignmentConfig(kind="flow_guided"), warp_then_estimate=True)
    with pytest.raises(ValueError, match="residual_offsets"):
        EDVRConfig(alignment=AlignmentConfig(kind="flow"), warp_then_estimate=True)
    with pytest.raises(ValueError, match="residual_offsets"):
        EDVR(num_feat=8, num_frame=3, warp_then_estimate=True)


# --------------------------------------------------------------------------- the cost volume


def test_local_correlation_peaks_at_the_true_displacement_and_equals_a_loop():
    """``out[k](p) = mean_c ref(p) * other(p + s_k)``: written out as a loop over displacements
    and pixels (zero outside the frame), and, for a neighbour moved by an integer motion, largest
    at that motion's displacement on the interior."""
    from dalign_nb.ops import local_correlation

    g = torch.Generator().manual_seed(3)
    ref = torch.randn(2, 5, 9, 11, generator=g, dtype=torch.float64)
    other = torch.randn(2, 5, 9, 11, generator=g, dtype=torch.float64)
    d = 2
    out = local_correlation(ref, other, d)
    assert out.shape == (2, 25, 9, 11)
    expected = torch.zeros_like(out)
    for k, (dy, dx) in enumerate((dy, dx) for dy in range(-d, d + 1) for dx in range(-d, d + 1)):
        for y in range(9):
            for x in range(11):
                if 0 <= y + dy < 9 and 0 <= x + dx < 11:
                    expected[:, k, y, x] = (ref[:, :, y, x] * other[:, :, y + dy, x + dx]).mean(1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    wide = torch.randn(2, 64, 9, 11, generator=g, dtype=torch.float64)  # 64 channels: one clear peak
    moved = _moved(wide, -1, 2)  # moved(p + (-1, 2)) = wide(p): a backward warp by (dy, dx) = (-1, 2)
    peak = local_correlation(wide, moved, d)[..., 3:-3, 3:-3].argmax(1)
    assert (peak == (-1 + d) * (2 * d + 1) + (2 + d)).all()
    with pytest.raises(ValueError, match="max_displacement"):
        local_correlation(ref, other, -1)
    with pytest.raises(ValueError, match="one shape"):
        local_correlation(ref, other[..., :5], 1)


def test_cost_volume_feeds_every_offset_branch_and_is_off_by_default():
    """EDVR's default and BasicSR's layout have no cost volume; with d the three offset branches
    take (2d+1)^2 channels more, the rest of the model is the same, gradients reach the
    features through the correlation, and a bad d is refused."""
    assert EDVRConfig().cost_volume == 0
    on, off = _wte_model(warp_then_estimate=True, cost_volume=2), _wte_model(warp_then_estimate=True)
    a, b = on.state_dict(), off.state_dict()
    assert a.keys() == b.keys()
    differ = {k for k in a if a[k].shape != b[k].shape}
    assert differ == {f"pcd_align.offset_conv1.{lvl}.weight" for lvl in ("l3", "l2", "l1")}
    assert all(a[k].shape[1] == b[k].shape[1] + 25 for k in differ)
    x = torch.rand(1, 3, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    on(x).sum().backward()
    assert x.grad.abs().sum() > 0
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="cost_volume"):
            EDVRConfig(cost_volume=bad)


# --------------------------------------------------------------------------- one random stream per module


def _built(seed: int, per_module: bool, **alignment) -> dict:
    torch.manual_seed(seed)
    model = EDVR(num_feat=8, num_frame=3, deformable_groups=1, num_extract_block=1, num_reconstruct_block=2,
                 alignment=AlignmentConfig(**alignment), seed_per_module=per_module)
    return model.state_dict()


def _alignment_modules(name: str) -> bool:
    return name.startswith(("pcd_align.dcn_pack.", "pcd_align.cas_dcnpack."))


def test_seed_per_module_makes_n1_and_n15_share_every_weight_outside_the_alignment():
    """fig9's pair: with one stream per module the two models of one seed start equal in every
    weight they share; with BasicSR's single stream the larger alignment shifts what comes after."""
    n1 = _built(0, True, kind="decomposed", num_offsets=1, modulated=False)
    n15 = _built(0, True, kind="decomposed", num_offsets=15, modulated=False)
    shared = [k for k in n1 if not _alignment_modules(k)]
    assert len(shared) > 50 and all(torch.equal(n1[k], n15[k]) for k in shared)
    assert n1["pcd_align.dcn_pack.l1.weight"].shape != n15["pcd_align.dcn_pack.l1.weight"].shape
    g1 = _built(0, False, kind="decomposed", num_offsets=1, modulated=False)
    g15 = _built(0, False, kind="decomposed", num_offsets=15, modulated=False)
    assert not all(torch.equal(g1[k], g15[k]) for k in shared)  # e.g. the TSA fusion differs
    other = _built(1, True, kind="decomposed", num_offsets=1, modulated=False)
    assert not torch.equal(other["fusion.feat_fusion.weight"], n1["fusion.feat_fusion.weight"])


def test_seed_per_module_keeps_table1_twins_identical():
    """A k x k DCN and its decomposition on the kernel grid still start from the same weights."""
    dcn = _built(3, True, kind="dcn", kernel_size=3, modulated=False)
    grid = _built(3, True, kind="decomposed", num_offsets=9, kernel_size=3, grid=True, modulated=False)
    assert dcn.keys() == grid.keys()
    for k in dcn:
        torch.testing.assert_close(dcn[k].reshape(grid[k].shape), grid[k], rtol=0, atol=0)
