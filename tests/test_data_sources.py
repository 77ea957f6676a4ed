"""Clip sources: bundled clips and their split, video files, image-folder layouts, patches."""

import itertools

import cv2
import numpy as np
import pytest
import torch

from dalign_nb.config import Profile, get_profile
from dalign_nb.data import (
    DatasetNotFoundError,
    PatchDataset,
    SceneConfig,
    VideoError,
    augment,
    bd_degrade,
    bundled_clips,
    bundled_shots,
    get_clips,
    read_video,
    reds_clips,
    validation_clips,
    validation_samples,
    vid4_clips,
    video_clips,
    vimeo_clips,
)
from dalign_nb.flow import estimate_flows
from dalign_nb.ops import flow_warp


def write_video(path, num_frames, size=(48, 32)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for i in range(num_frames):
        writer.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))
    writer.release()


def write_pngs(folder, num_frames, size=(64, 48), names=None):
    folder.mkdir(parents=True)
    names = names or [f"{i:08d}.png" for i in range(num_frames)]
    for i, name in enumerate(names):
        img = np.random.default_rng(i).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        cv2.imwrite(str(folder / name), img)


# ---------------------------------------------------------------- bundled clips and the split


def test_bundled_shots_and_fixed_split():
    shots = bundled_shots()
    bikes = [(s.start, s.stop) for s in shots if s.clip == "bikes"]
    assert bikes == [(0, 30), (30, 76), (76, 137), (137, 187), (187, 242), (242, 250)]
    assert [(s.clip, s.index) for s in shots if s.split == "test"] == [("bikes", 2), ("carphone", 0)]
    assert {s.clip: s.stop for s in shots} == {"bikes": 250, "bigbuckbunny": 132, "carphone": 120}


def test_training_clips_never_touch_the_held_out_shots():
    train = bundled_clips("train")
    held = {c.name for c in bundled_clips("test")}
    assert held == {"bikes/shot2", "carphone/shot0"}
    assert not held & {c.name for c in train}
    test_frames = bundled_clips("test")[0].hr_frames
    assert all(not np.shares_memory(c.hr_frames, test_frames) for c in train)
    assert train[0].lr(0).shape == (68, 160, 3) and train[0].hr(0).shape == (272, 640, 3)


# ---------------------------------------------------------------- video files


def test_video_file_round_trip(tmp_path):
    write_video(tmp_path / "v.avi", 6)
    frames = read_video(tmp_path / "v.avi", min_frames=6)
    assert frames.shape == (6, 32, 48, 3) and frames.dtype == np.uint8
    clips = video_clips(tmp_path / "v.avi")
    assert sum(len(c) for c in clips) == 6 and clips[0].lr(0).shape == (8, 12, 3)


def test_short_corrupt_and_missing_videos_give_clear_errors(tmp_path):
    write_video(tmp_path / "short.avi", 3)
    with pytest.raises(VideoError, match="only 3 decodable frames, need at least 5"):
        read_video(tmp_path / "short.avi", min_frames=5)
    (tmp_path / "bad.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(VideoError, match="bad.mp4: no decodable frames"):
        read_video(tmp_path / "bad.mp4")
    with pytest.raises(VideoError, match="video file not found"):
        read_video(tmp_path / "missing.mp4")


# ---------------------------------------------------------------- image-folder layouts


def test_missing_datasets_say_what_was_expected_where(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"REDS: expected the folder train_sharp/ at .*sharp"):
        reds_clips(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="Vimeo-90K: expected the folder sequences/"):
        vimeo_clips(tmp_path)
    (tmp_path / "sequences").mkdir()
    with pytest.raises(DatasetNotFoundError, match="sep_trainlist.txt"):
        vimeo_clips(tmp_path)
    (tmp_path / "sep_trainlist.txt").write_text("00001/0001\n")
    with pytest.raises(DatasetNotFoundError, match="frames of 00001/0001"):
        vimeo_clips(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="Vid4: expected the folder GT/"):
        vid4_clips(tmp_path)
    (tmp_path / "GT" / "calendar").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="no .png frames in .*calendar"):
        vid4_clips(tmp_path)


def test_reds_layout_and_reds4_split(tmp_path):
    for clip in ("000", "001", "002"):
        write_pngs(tmp_path / "train_sharp" / clip, 5)
        write_pngs(tmp_path / "train_sharp_bicubic" / "X4" / clip, 5, size=(16, 12))
    assert [c.name for c in reds_clips(tmp_path, "train")] == ["REDS/001", "REDS/002"]
    (test,) = reds_clips(tmp_path, "test")
    assert test.name == "REDS/000" and len(test) == 5
    assert test.hr(0).shape == (48, 64, 3) and test.lr(0).shape == (12, 16, 3)
    expected = cv2.cvtColor(cv2.imread(str(tmp_path / "train_sharp/000/00000003.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(test.hr(3), expected)


def test_vimeo_and_vid4_layouts(tmp_path):
    names = [f"im{i}.png" for i in range(1, 8)]
    write_pngs(tmp_path / "vimeo" / "sequences" / "00001" / "0001", 7, names=names)
    (tmp_path / "vimeo" / "sep_testlist.txt").write_text("00001/0001\n")
    (clip,) = vimeo_clips(tmp_path / "vimeo", "test")
    assert len(clip) == 7 and clip.lr(6).shape == (12, 16, 3)  # LR by BI on the fly
    write_pngs(tmp_path / "vid4" / "GT" / "walk", 4)
    (walk,) = vid4_clips(tmp_path / "vid4")
    assert walk.name == "Vid4/walk" and walk.lr(0).shape == (12, 16, 3)
    ds = PatchDataset([clip], num_frames=5, patch_size=8, samples_per_epoch=2)
    assert ds[0]["lq"].shape == (5, 3, 8, 8) and ds[0]["gt"].shape == (3, 32, 32)


# ---------------------------------------------------------------- patches


SMALL = SceneConfig(height=128, width=128, num_frames=5)


@pytest.fixture(scope="module")
def flow_dataset():
    return PatchDataset("synthetic", num_frames=5, patch_size=24, with_flow=True, num_scenes=3,
                        scene_config=SMALL, seed=1, samples_per_epoch=20)


def test_patch_items_follow_the_contract(flow_dataset):
    item = flow_dataset[0]
    assert item["lq"].shape == (5, 3, 24, 24) and item["gt"].shape == (3, 96, 96)
    assert item["flow"].shape == (5, 2, 24, 24) and (item["flow"][2] == 0).all()
    assert all(v.dtype == torch.float32 for v in item.values())
    assert 0 <= item["lq"].min() and item["lq"].max() <= 1 and 0 <= item["gt"].min() and item["gt"].max() <= 1
    again = flow_dataset[0]
    assert all(torch.equal(item[k], again[k]) for k in item)
    assert not torch.equal(item["lq"], flow_dataset[1]["lq"])


def test_patch_flows_align_the_lr_frames(flow_dataset):
    # LR warping interpolates and the patches hold occlusions (a quarter to a half of the
    # pixels here), so it is not exact; the true flow must still beat no flow by far wherever
    # it points inside the patch
    ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    totals = torch.zeros(2)
    for i in range(len(flow_dataset)):
        item = flow_dataset[i]
        centre, flow = item["lq"][2], item["flow"]
        qx, qy = xs + flow[:, 0], ys + flow[:, 1]
        inside = (qx >= 0) & (qx <= 23) & (qy >= 0) & (qy <= 23)
        with_flow = (flow_warp(item["lq"], flow) - centre).abs().mean(1)[inside].mean()
        without = (item["lq"] - centre).abs().mean(1)[inside].mean()
        assert with_flow < 0.8 * without
        totals += torch.stack([with_flow, without])
    assert totals[0] < 0.5 * totals[1]


def test_dataset_augmentation_is_augment_of_the_plain_sample():
    kw = dict(num_frames=5, patch_size=16, with_flow=True, num_scenes=2, scene_config=SMALL, seed=4)
    plain = PatchDataset("synthetic", augment=False, **kw)
    aug = PatchDataset("synthetic", **kw)
    seen = set()
    for i in range(12):
        p, a = plain[i], aug[i]
        names = ("hflip", "vflip", "transpose", "reverse")
        matches = [flags for flags in itertools.product([False, True], repeat=4)
                   if all(torch.equal(x, y) for x, y in zip(augment(p["lq"], p["gt"], p["flow"], None,
                                                                    **dict(zip(names, flags))),
                                                            (a["lq"], a["gt"], a["flow"])))]
        assert matches
        seen.add(matches[0])
    assert len(seen) > 1


def test_bundled_patches_with_stride_and_estimated_flow():
    ds = PatchDataset("bundled", num_frames=3, patch_size=32, temporal_stride=(2, 4), with_flow=True,
                      samples_per_epoch=4)
    item = ds[0]
    assert item["flow"].shape == (3, 2, 32, 32) and (item["flow"][1] == 0).all()
    assert {c.name.split("/")[0] for c in ds.clips} == {"bikes", "bigbuckbunny"}  # carphone held out
    with pytest.raises(ValueError, match="odd"):
        PatchDataset("bundled", num_frames=4)
    with pytest.raises(ValueError, match="large enough"):
        PatchDataset("bundled", num_frames=5, patch_size=512)


def test_validation_clips():
    bundled = validation_clips("bundled", max_frames=3)
    assert [c.name for c in bundled] == ["bikes/shot2", "carphone/shot0"]
    assert bundled[1].lq.shape == (3, 3, 36, 44) and bundled[1].gt.shape == (3, 3, 144, 176)
    (syn,) = validation_clips("synthetic", num_scenes=1, scene_config=SMALL)
    assert syn.lq.shape == (5, 3, 32, 32) and syn.flow.shape == (5, 2, 32, 32)
    assert syn.occlusion.shape == (5, 32, 32) and syn.gt.shape == (5, 3, 128, 128)


# ---------------------------------------------------------------- degradation (BI / BD)


def _bd_of(gt: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) float in [0, 1] of 8-bit frames -> their BD LR frames, the same way."""
    frames = (gt.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return torch.from_numpy(np.stack([bd_degrade(f) for f in frames])).permute(0, 3, 1, 2).float() / 255


def test_bd_clips_are_bd_degraded_from_the_same_hr_frames():
    sources = (("synthetic", {"num_scenes": 1, "scene_config": SMALL}), ("bundled", {"max_frames": 3}))
    for source, kw in sources:
        (bi,) = validation_clips(source, max_clips=1, **kw)
        (bd,) = validation_clips(source, max_clips=1, degradation="bd", **kw)
        torch.testing.assert_close(bd.gt, bi.gt, rtol=0, atol=0)
        torch.testing.assert_close(bd.lq, _bd_of(bd.gt), rtol=0, atol=0)
        assert (bd.lq - bi.lq).abs().mean() > 0.005  # not the BI frames: another LR grid and blur
        if bi.flow is not None:  # a translation's LR flow does not depend on how LR was made
            torch.testing.assert_close(bd.flow, bi.flow, rtol=0, atol=0)


def test_bd_training_patches_and_the_profile_field():
    ds = PatchDataset("synthetic", num_frames=3, patch_size=8, num_scenes=1, augment=False,
                      scene_config=SceneConfig(height=64, width=64, num_frames=3), degradation="bd")
    clip = ds.clips[0]
    lr = np.stack([clip.lr(i) for i in range(len(clip))])
    hr8 = (np.stack([clip.hr(i) for i in range(len(clip))]) * 255).round().astype(np.uint8)
    np.testing.assert_array_equal((lr * 255).round().astype(np.uint8), np.stack([bd_degrade(f) for f in hr8]))
    item = ds[0]
    assert item["lq"].shape == (3, 3, 8, 8) and item["gt"].shape == (3, 32, 32)

    p = get_profile("quick").with_overrides({"data.degradation": "bd"})
    assert Profile.from_dict(p.to_dict()).data.degradation == "bd"
    assert get_profile("quick").resume_conflicts(p) == ["data.degradation"]  # another training set
    legacy = p.to_dict()
    del legacy["data"]["degradation"]  # results stored before the field read as BI
    assert Profile.from_dict(legacy).data.degradation == "bi"


def test_noisy_clips_are_the_clean_ones_plus_a_fixed_draw_of_noise_per_frame():
    """"bi+n10": the BI frames plus Gaussian noise of sd 10 / 255, the same draw every time a
    clip is made, another draw on every frame; HR frames and exact flows untouched."""
    sources = (("synthetic", {"num_scenes": 1, "scene_config": SMALL}), ("bundled", {"max_frames": 3}))
    for source, kw in sources:
        (bi,) = validation_clips(source, max_clips=1, **kw)
        (noisy,) = validation_clips(source, max_clips=1, degradation="bi+n10", **kw)
        (again,) = validation_clips(source, max_clips=1, degradation="bi+n10", **kw)
        torch.testing.assert_close(noisy.gt, bi.gt, rtol=0, atol=0)
        torch.testing.assert_close(again.lq, noisy.lq, rtol=0, atol=0)
        noise = (noisy.lq - bi.lq) * 255
        inside = (bi.lq > 0.15) & (bi.lq < 0.85)  # away from the clipping at 0 and 255
        assert abs(noise[inside].std().item() - 10.0) < 0.4 and abs(noise[inside].mean().item()) < 0.3
        torch.testing.assert_close(noise, noise.round(), rtol=0, atol=1e-4)  # rounded to 8 bits again
        assert (noise[0] - noise[1]).abs().mean() > 5  # an independent draw per frame
        if bi.flow is not None:
            torch.testing.assert_close(noisy.flow, bi.flow, rtol=0, atol=0)


def test_degradation_names_and_noise_by_hand():
    from dalign_nb.data.degrade import add_noise, degrade, parse_degradation

    assert [parse_degradation(n) for n in ("bi", "bd", "bi+n10", "bd+n2.5")] == \
        [("bi", 0.0), ("bd", 0.0), ("bi", 10.0), ("bd", 2.5)]
    for bad in ("bi+n0", "bi+n-3", "bi+nx", "bi+n", "bicubic+n5", "BI"):
        with pytest.raises(ValueError, match="such as 'bi\\+n10'"):
            parse_degradation(bad)
    img = np.full((8, 8, 3), 100, np.uint8)
    expected = np.clip(np.round(100 + np.random.default_rng([3, 1]).normal(0, 10, img.shape)), 0, 255)
    np.testing.assert_array_equal(add_noise(img, 10, [3, 1]), expected.astype(np.uint8))
    np.testing.assert_array_equal(add_noise(np.zeros((4, 4), np.uint8), 50, 0) >= 0, True)  # clipped
    assert add_noise(np.full((4, 4), 0.5, np.float32), 10, 0).dtype == np.float32
    with pytest.raises(ValueError, match="give noise_seed"):
        degrade(np.full((16, 16, 3), 9, np.uint8), "bi+n10")


def test_bad_degradations_are_refused():
    with pytest.raises(ValueError, match="degradation must be one of"):
        get_profile("quick").with_overrides({"data.degradation": "bicubic"})
    with pytest.raises(ValueError, match="degradation must be one of"):
        validation_clips("synthetic", num_scenes=1, scene_config=SMALL, degradation="BD")
    with pytest.raises(ValueError, match="read from BI LR frames"):
        validation_clips("reds", degradation="bd")


def _patch_corner(scene, lq):
    """Where the LR patch ``lq`` (T, 3, p, p) was cut from ``scene``'s frames."""
    frames = np.stack([scene.lr(i) for i in range(len(scene))])  # (T, h, w, 3)
    p = lq.shape[-1]
    target = lq.permute(0, 2, 3, 1).numpy()
    hits = [(y, x) for y in range(frames.shape[1] - p + 1) for x in range(frames.shape[2] - p + 1)
            if np.array_equal(frames[:, y : y + p, x : x + p], target)]
    assert len(hits) == 1
    return hits[0]


def test_dis_flow_source_gives_estimated_flows_and_keeps_the_exact_ones():
    config = SceneConfig(height=128, width=128, num_frames=3)
    exact = PatchDataset("synthetic", num_frames=3, patch_size=16, num_scenes=1, augment=False,
                         with_flow=True, scene_config=config)
    dis = PatchDataset("synthetic", num_frames=3, patch_size=16, num_scenes=1, augment=False,
                       with_flow=True, scene_config=config, flow_source="dis")
    a, b = exact[0], dis[0]
    torch.testing.assert_close(b["lq"], a["lq"], rtol=0, atol=0)  # the same draw
    scene = dis.clips[0]
    whole = estimate_flows(torch.from_numpy(np.stack([scene.lr(i) for i in range(3)])).permute(0, 3, 1, 2))
    y, x = _patch_corner(scene, a["lq"])
    # DIS on the whole scene, cut as the patch is (not DIS on the patch)
    torch.testing.assert_close(b["flow"], whole[:, :, y : y + 16, x : x + 16], rtol=0, atol=0)
    assert (b["flow"] - a["flow"]).abs().max() > 0  # an estimate, not the exact flow

    (clip,) = get_clips("synthetic", "test", num_scenes=1, scene_config=config)
    (s_exact,) = validation_samples([clip], 3, 1, with_flow=True)
    (s_dis,) = validation_samples([clip], 3, 1, with_flow=True, flow_source="dis")
    torch.testing.assert_close(s_dis["flow_exact"], s_exact["flow"], rtol=0, atol=0)
    torch.testing.assert_close(s_dis["flow"], estimate_flows(s_dis["lq"]), rtol=0, atol=0)
    # DIS on these frames: most visible pixels within 1 px of the exact flow
    err = (s_dis["flow"] - s_exact["flow"]).norm(dim=1)[~s_exact["occlusion"]]
    assert (err < 1).float().mean() > 0.5

    p = get_profile("quick").with_overrides({"data.flow_source": "dis"})
    assert get_profile("quick").resume_conflicts(p) == ["data.flow_source"]
    with pytest.raises(ValueError, match="flow_source must be one of"):
        get_profile("quick").with_overrides({"data.flow_source": "pwc"})
    with pytest.raises(ValueError, match="flow_source must be one of"):
        validation_samples([clip], 3, 1, flow_source="DIS")
