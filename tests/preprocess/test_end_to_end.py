"""python -m preprocess on a folder mixing codecs, odd names and every kind of bad input."""

from __future__ import annotations

import json
import tarfile
from fractions import Fraction
from pathlib import Path

import av
import pyarrow.parquet as pq
import pytest

from tests.preprocess.helpers import params_file, run_cli

LONG_CAPTION = "word " * 700  # 3500 characters > max_caption_chars 2000


def write_webvid(path: Path, rows: list[tuple[str, bytes]]) -> None:
    """A WebVid CSV written as bytes, so a caption can hold bytes that are not UTF-8."""
    lines = [b"videoid,contentUrl,duration,page_dir,name"]
    for vid, caption in rows:
        quoted = b'"' + caption.replace(b'"', b'""') + b'"'
        lines.append(b'"' + vid.encode() + b'",https://example.com/v,PT00H00M01S,,' + quoted)
    path.write_bytes(b"\n".join(lines) + b"\n")


@pytest.fixture(scope="module")
def run(media, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    good, bad = media["good"], media["bad"]
    rows = [(stem, f"a test pattern called {stem}".encode()) for stem in good]
    rows += [(stem, f"broken video {stem}".encode()) for stem in media["bad_expect"]]
    rows += [("h264", b"a second caption of h264"), ("h264", b"a test pattern called h264"),
             ("mpeg4.", b"an id that collides with mpeg4"),
             ("vp9", b"")]  # vp9 listed twice: the second (empty) row fails, the sample is fine
    caption_rows = {"capempty": b"   ", "caplong": LONG_CAPTION.encode(), "capbytes": b"caf\xe9 \xff\xfe bad"}
    # these videos exist (copies of the h264 clip) so only the caption can be the reason
    for stem in caption_rows:
        (media["videos"] / f"{stem}.mp4").write_bytes(good["h264"].read_bytes())
    rows += list(caption_rows.items())
    ann = tmp / "annotations.csv"
    write_webvid(ann, rows)
    params = params_file(tmp, max_window_s=1.4, cache_dir=None, shard_samples=4)
    out = tmp / "shards"
    proc = run_cli("--annotations", str(ann), "--videos", str(media["videos"]), "--out", str(out),
                   "--params", str(params), "--workers", "2")
    stats = pq.read_table(out / "stats.parquet").to_pylist()
    return {"out": out, "rows": rows, "stats": stats, "stdout": proc.stdout, "bad_expect": media["bad_expect"]}


def tar_samples(out: Path) -> dict[str, dict]:
    """key -> {"json": dict, "mp4": bytes, "shard": name} over every shard tar."""
    samples: dict[str, dict] = {}
    for shard in sorted(out.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar:
                key, ext = m.name.split(".", 1)
                entry = samples.setdefault(key, {"shard": shard.name})
                assert ext not in entry, f"{m.name} twice"
                entry[ext] = tar.extractfile(m).read()
    for entry in samples.values():
        entry["json"] = json.loads(entry["json"])
    return samples


def test_one_stats_row_per_input_row(run):
    rows = [r["row"] for r in run["stats"]]
    assert sorted(rows) == list(range(len(run["rows"])))
    origins = [r["origin"] for r in run["stats"]]
    assert len(set(origins)) == len(origins)


def by_origin_line(run) -> dict[int, dict]:
    return {int(r["origin"].rsplit(" ", 1)[1]): r for r in run["stats"]}


def test_each_bad_input_fails_with_its_reason(run):
    stats = by_origin_line(run)
    for line, (vid, _) in enumerate(run["rows"], 2):
        row = stats[line]
        if vid in run["bad_expect"]:
            assert row["status"] == "failed", row
            assert row["error"].startswith(run["bad_expect"][vid]), (vid, row["error"])
    reasons = {run["rows"][line - 2][0]: r["error"] for line, r in stats.items() if r["status"] == "failed"}
    assert reasons["capempty"].startswith("empty caption")
    assert reasons["caplong"].startswith("caption too long")
    assert "not valid UTF-8" in reasons["capbytes"]
    assert reasons["mpeg4."].startswith("key collision")
    # WebVid rows of one videoid are its captions; a repeated caption and an empty one fail
    rows_of = {}
    for line, (vid, _) in enumerate(run["rows"], 2):
        rows_of.setdefault(vid, []).append(stats[line])
    assert [r["status"] for r in rows_of["h264"]] == ["ok", "ok", "failed"]
    assert rows_of["h264"][2]["error"].startswith("duplicate row: same video and text as annotations.csv:line 2")
    assert [r["status"] for r in rows_of["vp9"]] == ["ok", "failed"]


def test_every_good_video_is_an_ok_sample(run, media):
    ok = {r["key"] for r in run["stats"] if r["status"] == "ok"}
    assert {"h264", "vp9", "mpeg4", "hevc", "anim", "rotated", "vfr", "clip_with_spaces_é",
            "видео_日本", "long"} <= ok
    samples = tar_samples(run["out"])
    assert "long_w000" in samples and "long_w001" in samples and "long" not in samples
    assert set(samples) == {k for k in ok if k != "long"} | {"long_w000", "long_w001"}
    assert all("." not in k for k in samples)


def test_ok_samples_decode_to_what_their_json_states(run):
    for key, s in tar_samples(run["out"]).items():
        meta = s["json"]
        v = meta["video"]
        assert meta["key"] == key and meta["captions"], key
        if key == "h264":
            assert meta["captions"] == ["a test pattern called h264", "a second caption of h264"]
        assert v["width"] % 2 == 0 and v["height"] % 2 == 0 and min(v["width"], v["height"]) == 128
        path = run["out"] / f"_check_{abs(hash(key))}.mp4"
        path.write_bytes(s["mp4"])
        try:
            with av.open(str(path)) as c:
                stream = c.streams.video[0]
                assert stream.codec_context.name == "h264"
                assert stream.average_rate == Fraction(v["fps"]).limit_denominator(1000)
                frames, keyframes, types = 0, [], set()
                for frame in c.decode(stream):
                    assert (frame.width, frame.height) == (v["width"], v["height"])
                    assert frame.format.name == "yuv420p"
                    if frame.key_frame:
                        keyframes.append(frames)
                    types.add(frame.pict_type.name if hasattr(frame.pict_type, "name") else str(frame.pict_type))
                    frames += 1
            assert frames == v["num_frames"], key
            assert keyframes == list(range(0, frames, v["keyint"])), (key, keyframes)
            assert not any("B" == t[-1:] for t in types), types
        finally:
            path.unlink()


def test_rotation_windows_and_source_facts(run):
    samples = tar_samples(run["out"])
    rot = samples["rotated"]["json"]
    assert rot["source_probe"]["rotation"] == 90 and rot["normalize"]["rotation_applied"] == 90
    assert rot["video"]["width"] < rot["video"]["height"]  # portrait after rotation
    assert samples["hevc"]["json"]["source_probe"]["codec"] == "hevc"
    assert samples["vp9"]["json"]["source_probe"]["container"] == "matroska"
    assert samples["vfr"]["json"]["extra"]["variable_frame_rate"] is True
    w0, w1 = samples["long_w000"]["json"], samples["long_w001"]["json"]
    assert w0["normalize"]["window"] == {"index": 0, "count": 2, "start": 0.0, "length": 1.4}
    assert w1["normalize"]["window"]["start"] == 1.4
    assert w0["video"]["num_frames"] == 14 and w0["normalize"]["audio"] == "dropped"
    ok_long = [r for r in run["stats"] if r["key"] == "long"][0]
    assert ok_long["windows"] == 2 and ok_long["out_num_frames"] == 28
    assert samples["clip_with_spaces_é"]["json"]["source"] == "clip with spaces é.mp4"


def test_shard_size_and_summary(run):
    out = run["out"]
    summary = json.loads((out / "stats_summary.json").read_text())
    assert summary["rows"] == len(run["rows"])
    assert summary["failed"] == sum(1 for r in run["stats"] if r["status"] == "failed")
    manifest = pq.read_table(out / "manifest.parquet")
    plan = json.loads((out / "_plan.json").read_text())
    assert plan["shards"] == -(-manifest.num_rows // 4)
    assert len(list((out / "_stats").glob("shard-*.parquet"))) == plan["shards"]
    assert not list(out.glob(".*")) and not (out / "_work").exists()
