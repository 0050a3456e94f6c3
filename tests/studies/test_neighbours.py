"""Neighbour batches (studies/neighbours): clips whose captions read alike share a batch, every
clip still comes once per epoch, broken shards and members are skipped, and the patch comes off."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from studies.neighbours import batches as nb
from tests.support import make_h264_clip

# Four pairs of captions that read alike (the same words, or the same events in the other order);
# the pairs differ from each other in every content word.
CAPTIONS = {
    "clip_00000": ["a red circle moves left, then turns blue"],
    "clip_00001": ["a red circle turns blue, then moves left"],
    "clip_00002": ["a green star grows"],
    "clip_00003": ["a green star grows slowly"],
    "clip_00004": ["two yellow squares spin on a striped background"],
    "clip_00005": ["two yellow squares rotate on a striped background"],
    "clip_00006": ["an orange triangle disappears behind a wall"],
    "clip_00007": ["an orange triangle vanishes behind a wall"],
}
PARTNER = {k: f"clip_{int(k[-5:]) ^ 1:05d}" for k in CAPTIONS}


def _meta(key: str, captions: list[str]) -> dict:
    return {"key": key, "source": f"videos/{key}.mp4", "format": "webvid", "captions": captions, "qa": [],
            "split": "train", "video": {"fps": 12.0, "num_frames": 24, "width": 64, "height": 48,
                                        "duration": 2.0, "codec": "h264", "pix_fmt": "yuv420p", "keyint": 12},
            "source_probe": {}, "normalize": {"target_fps": 12, "short_side": 48}, "extra": {}}


def _write_shards(folder: Path, captions: dict[str, list[str]], broken: bool) -> Path:
    """The clips in two shards, partners in different shards (so grouping must see both), and
    with ``broken`` one member whose json is not an object (the loader skips it)."""
    clip = folder / "clip.mp4"
    make_h264_clip(clip, "testsrc2", 2.0, width=64, height=48, fps=12)
    video = clip.read_bytes()
    clip.unlink()
    keys = list(captions)
    for s, part in enumerate((keys[0::2], keys[1::2])):
        with wds.TarWriter(str(folder / f"shard-{s:06d}.tar")) as sink:
            for key in part:
                sink.write({"__key__": key, "mp4": video, "json": json.dumps(_meta(key, captions[key])).encode()})
            if s == 1 and broken:
                sink.write({"__key__": "clip_broken", "mp4": video, "json": b"[1, 2]"})
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return _write_shards(tmp_path_factory.mktemp("neighbour_shards"), CAPTIONS, broken=True)


# A second caption set numbered from clip_00000 as well (two generator runs joined into one shard
# list): the same keys and the same pairing, other words, so no clip reads like its namesake.
RENUMBERED = {
    "clip_00000": ["a purple heart bounces up, then fades away"],
    "clip_00001": ["a purple heart fades away, then bounces up"],
    "clip_00002": ["a white cloud drifts across the sky"],
    "clip_00003": ["a white cloud drifts slowly across the sky"],
    "clip_00004": ["three black dots blink on a checkered floor"],
    "clip_00005": ["three black dots flash on a checkered floor"],
    "clip_00006": ["a paper kite climbs above a tall tree"],
    "clip_00007": ["a paper kite rises above a tall tree"],
}


@pytest.fixture(scope="module")
def renumbered(tmp_path_factory) -> Path:
    return _write_shards(tmp_path_factory.mktemp("renumbered_shards"), RENUMBERED, broken=False)


@pytest.fixture
def installed():
    nb.install(2)
    yield
    nb.uninstall()
    nb.VECTORS.clear()
    nb._state.pop("read", None)


def test_group_order_places_each_anchor_beside_its_nearest_clip():
    keys = ["a", "b", "c", "d", "e", "f"]
    base = np.eye(3, dtype=np.float32)
    vectors = {}
    for i, k in enumerate(keys):                   # a~b, c~d, e~f
        v = base[i // 2] + 0.1 * (i % 2) * base[(i // 2 + 1) % 3]
        vectors[k] = v / np.linalg.norm(v)
    for seed in range(5):
        order = nb.group_order(keys + ["unknown"], vectors, 2, random.Random(seed))
        assert sorted(order) == list(range(7)) and order[-1] == 6   # each once; no vector: last
        groups = {frozenset(keys[i] for i in order[j:j + 2]) for j in range(0, 6, 2)}
        assert groups == {frozenset("ab"), frozenset("cd"), frozenset("ef")}
    with pytest.raises(ValueError, match="group must be >= 1"):
        nb.group_order(keys, vectors, 0, random.Random(0))
    with pytest.raises(ValueError, match="at least 2 clips"):
        nb.install(1)


def test_caption_vectors_put_each_clip_nearest_its_partner(shards):
    captions = nb.read_captions(sorted(str(p) for p in shards.glob("*.tar")))
    assert {key for key, _ in captions} == set(CAPTIONS)     # the broken member is left out, nothing else
    vectors = nb.clip_vectors(captions)
    keys = list(vectors)
    matrix = np.stack([vectors[k] for k in keys])
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    sim = matrix @ matrix.T
    np.fill_diagonal(sim, -1)
    assert all(keys[int(sim[i].argmax())][0] == PARTNER[k[0]] for i, k in enumerate(keys))


def test_clips_of_two_caption_sets_with_the_same_keys_keep_their_own_vectors(shards, renumbered):
    # Keyed by the key alone, the second set's vectors would overwrite the first's, and each clip
    # would be paired with its namesake from the other set (the same vector: cosine 1).
    urls = sorted(str(p) for p in shards.glob("*.tar")) + sorted(str(p) for p in renumbered.glob("*.tar"))
    vectors = nb.clip_vectors(nb.read_captions(urls))
    assert len(vectors) == 2 * len(CAPTIONS)
    ids = list(vectors)
    for seed in range(3):
        order = nb.group_order(ids, vectors, 2, random.Random(seed))
        for j in range(0, len(order), 2):
            (key_a, text_a), (key_b, text_b) = ids[order[j]], ids[order[j + 1]]
            assert key_a != key_b and PARTNER[key_a] == key_b           # its partner, never its namesake
            assert (text_a == tuple(CAPTIONS[key_a])) == (text_b == tuple(CAPTIONS[key_b]))  # same set


def test_unreadable_shard_is_reported_not_fatal(tmp_path, caplog):
    bad = tmp_path / "shard-000000.tar"
    bad.write_bytes(b"not a tar")
    assert nb.read_captions([str(bad), str(tmp_path / "missing.tar")]) == {}
    assert "cannot read" in caplog.text


def _loader_config(tmp_path: Path):
    import yaml

    from pipeline.config import load_params, section
    from tests.support import params_dict
    from train.data import LoaderConfig

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_dict()))
    params = load_params(path, overrides=[
        "loader.image_size=32", "loader.num_frames=2", "loader.batch_size=4", "loader.num_workers=1",
        "loader.shuffle_buffer=16", "loader.max_len=16", "loader.backend=cpu"])
    return section(params, LoaderConfig, "loader")


def test_loader_batches_hold_partners_every_epoch_and_every_clip_once(shards, tmp_path, installed):
    from train.data import build_loader

    # one worker: the vectors are computed in this process and reach the forked worker
    loader = build_loader(_loader_config(tmp_path), str(shards), train=True, seed=3)
    orders = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        seen = []
        for batch in loader:
            seen.append(batch["key"])
            for key in batch["key"]:
                assert PARTNER[key] in batch["key"], (epoch, batch["key"])
        flat = [k for b in seen for k in b]
        assert sorted(flat) == sorted(CAPTIONS)      # every clip once; the broken one skipped
        assert loader.stats["skipped"] == 1
        orders.append(flat)
    assert len({tuple(o) for o in orders}) > 1       # the groups' order changes with the epoch


def test_uninstall_restores_the_shuffle():
    import train.data.cpu_backend as cpu_backend
    import train.data.shards as shard_module

    before = (shard_module._shuffled, cpu_backend.iter_cpu_batches)
    nb.install(3)
    assert shard_module._shuffled is nb.grouped_shuffle
    nb.uninstall()
    assert (shard_module._shuffled, cpu_backend.iter_cpu_batches) == before


def test_share_puts_about_that_part_of_the_clips_in_groups():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(100, 64))
    vectors = {}
    for p, c in enumerate(centres):               # 100 partner pairs, far from each other
        for side in (0, 1):
            v = c + 0.05 * rng.normal(size=64)
            vectors[f"{p}-{side}"] = v / np.linalg.norm(v)
    keys = list(vectors)

    def grouped_fraction(share: float) -> float:
        order = [keys[i] for i in nb.group_order(keys, vectors, 2, random.Random(7), share)]
        together = sum(1 for a, b in zip(order, order[1:]) if a.split("-")[0] == b.split("-")[0])
        return 2 * together / len(order)

    assert grouped_fraction(1.0) == 1.0
    assert 0.35 < grouped_fraction(0.5) < 0.65
    assert grouped_fraction(0.05) < 0.2
    with pytest.raises(ValueError, match="share"):
        nb.group_order(keys, vectors, 2, random.Random(0), 1.5)


@pytest.mark.parametrize("flags, message", [
    (["--neighbours", "1"], "a group of at least 2 clips, got 1"),
    (["--neighbours", "-2"], "--neighbours must be >= 0, got -2"),
    (["--neighbours", "2", "--neighbour-share", "0"], "--neighbour-share must be in (0, 1], got 0.0"),
])
def test_levers_refuses_a_bad_neighbour_flag_by_name(flags, message, capsys):
    from studies.levers import main
    import train.data.shards as shard_module

    with pytest.raises(SystemExit):
        main([*flags, "--", "--recipe", "smaug"])
    assert message in capsys.readouterr().err
    assert shard_module._shuffled is not nb.grouped_shuffle     # nothing was installed
