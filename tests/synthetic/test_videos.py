"""Every video decodes with PyAV and holds exactly the frames meta.json describes."""

from __future__ import annotations

import tarfile

import numpy as np

from pipeline.synthetic.render import render
from pipeline.synthetic.scene import scene_from_meta

EXPECTED = {  # container -> (PyAV demuxer name contains, decoder)
    "mp4": ("mp4", "h264"), "webm": ("webm", "vp9"), "avi": ("avi", "mpeg4"), "gif": ("gif", "gif"),
}


def test_all_four_kinds_present(tiny_meta):
    assert {c["container"] for c in tiny_meta["clips"]} == set(EXPECTED)
    assert {c["codec"] for c in tiny_meta["clips"]} == {codec for _, codec in EXPECTED.values()}


def test_tar_members_are_the_clips_sorted_and_stamped(tiny_dataset, tiny_meta):
    with tarfile.open(tiny_dataset / "videos.tar") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names == sorted(c["file"] for c in tiny_meta["clips"])
    for m, clip in zip(members, tiny_meta["clips"]):
        assert m.name == f"videos/{clip['stem']}.{clip['container']}"
        assert (m.mtime, m.uid, m.gid, m.isfile()) == (0, 0, 0, True)


def test_decoded_frames_match_meta(tiny_meta, tiny_decoded):
    for clip in tiny_meta["clips"]:
        frames, info = tiny_decoded[clip["file"]]
        fmt, codec = EXPECTED[clip["container"]]
        assert fmt in info["format"].split(","), (clip["stem"], info)
        assert info["codec"] == codec
        assert frames.shape == (clip["num_frames"], clip["height"], clip["width"], 3), clip["stem"]
        assert (info["width"], info["height"]) == (clip["width"], clip["height"])
        assert abs(info["fps"] - clip["fps"]) < 1e-6, (clip["stem"], info["fps"])
        assert abs(clip["duration"] - clip["num_frames"] / clip["fps"]) < 1e-9
        assert 1.0 <= clip["duration"] <= 2.0 + 1 / clip["fps"]


def test_decoded_frames_show_the_scene(tiny_meta, tiny_decoded):
    """Re-rendering each clip from its meta entry reproduces the decoded video (up to
    compression loss): the ground truth in meta.json is what the pixels show."""
    for clip in tiny_meta["clips"]:
        frames, _ = tiny_decoded[clip["file"]]
        truth = render(scene_from_meta(clip))
        error = np.abs(frames.astype(np.int16) - truth.astype(np.int16)).mean()
        assert error < 4.0, (clip["stem"], clip["container"], error)
