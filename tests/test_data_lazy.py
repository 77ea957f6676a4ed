"""Paper-scale data: nothing reads a frame before it is needed.

With Vimeo-90K's 64k folders, reading (and BI-resizing) the first frame of every clip to
check its size, on every rank, took minutes before the first iteration; loading every
validation clip to keep the first few wasted the same again. Counted here on a small Vid4-style
folder dataset: PNG frames written with OpenCV, reads counted at the one place frames are read.
"""

import cv2
import numpy as np
import pytest

from dalign_nb.data import PatchDataset, clips, validation_clips, validation_samples

NUM_CLIPS, NUM_FRAMES = 3, 5


@pytest.fixture
def vid4(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for c in range(NUM_CLIPS):
        folder = tmp_path / "GT" / f"clip{c}"
        folder.mkdir(parents=True)
        side = 16 if c == NUM_CLIPS - 1 else 64  # the last clip is too small for an 8 px LR patch
        for i in range(NUM_FRAMES):
            cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 256, (side, side + 8, 3), np.uint8))
    reads = []
    real = clips._imread
    monkeypatch.setattr(clips, "_imread", lambda path: reads.append(path) or real(path))
    return tmp_path, reads


def test_patch_dataset_reads_no_frame_until_it_draws(vid4):
    root, reads = vid4
    ds = PatchDataset("vid4", num_frames=3, patch_size=8, root=root, augment=False)
    assert reads == [] and len(ds.clips) == NUM_CLIPS
    assert ds.clips[0].lr_size() == (16, 18) and reads == []  # from the PNG header: ceil(72 / 4) = 18
    sizes = set()
    for i in range(12):
        try:
            sizes.add(tuple(ds[i]["lq"].shape))
        except ValueError as exc:  # the small clip, refused by name when drawn
            assert "clip2" in str(exc) and "patch" in str(exc)
            sizes.add("refused")
    assert sizes == {(3, 3, 8, 8), "refused"} and len(reads) > 0


def test_validation_reads_only_the_clips_and_frames_it_keeps(vid4):
    root, reads = vid4
    kept = validation_clips("vid4", root=root, max_clips=1)
    assert len(kept) == 1 and len(reads) == 2 * NUM_FRAMES  # HR, and HR again for BI's LR
    reads.clear()
    samples = validation_samples(clips.vid4_clips(root)[:2], num_frame=3, frames_per_clip=1)
    assert [s["name"] for s in samples] == ["Vid4/clip0#1", "Vid4/clip1#1"]
    assert len(reads) == 2 * (3 + 1)  # per clip: 3 LR frames (each from its HR frame) + the HR centre
