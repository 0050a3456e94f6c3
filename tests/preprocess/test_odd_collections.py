"""Collections as people really hand them over (found by an audit on a collection the project had
never seen): broken links and undecodable names among the videos, thumbnails beside them, ids
that carry their extension, accents spelt apart, compressed tars, splits inside a CSV, captions
over several lines, NaN captions, and a rerun against a folder of another plan. Each either
works or fails with a reason that names the file, and never costs the other videos."""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
import unicodedata
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from preprocess.config import PreprocessConfig
from preprocess.formats import read_rows
from preprocess.ingest import build_manifest
from preprocess.sources import VideosError, index_videos

from .helpers import assert_error_line, run_cli


def manifest_rows(ann: Path, videos: Path, tmp_path: Path, **kw) -> dict[str, dict]:
    out = build_manifest(ann, videos, tmp_path / "m" / "manifest.parquet", **kw)
    return {r["video_id"]: r for r in pq.read_table(out).to_pylist()}


def webvid(path: Path, rows: list[tuple], header=("videoid", "name")) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    path.write_text(buf.getvalue())
    return path


def test_broken_links_and_undecodable_names_are_left_out_not_fatal(media, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "good.mp4").write_bytes(media["good"]["h264"].read_bytes())
    (videos / "gone.mp4").symlink_to("/nonexistent/gone.mp4")
    (videos / "loop_a.mp4").symlink_to("loop_b.mp4")
    (videos / "loop_b.mp4").symlink_to("loop_a.mp4")
    os.close(os.open(os.path.join(os.fsencode(videos), b"caf\xe9.mp4"), os.O_CREAT | os.O_WRONLY))
    with pytest.warns(UserWarning, match=r"4 file\(s\) left out") as caught:
        files = index_videos(videos)
    said = str(caught[0].message)
    for words in (r"caf\xe9.mp4 (file name is not UTF-8)", "gone.mp4 (broken link: No such file",
                  "loop_a.mp4 (broken link: Too many levels of symbolic links)"):
        assert words in said, said
    assert list(files["relpath"]) == ["good.mp4"]
    ann = webvid(tmp_path / "train.csv", [("good", "a good clip"), ("gone", "a clip whose link is broken")])
    with pytest.warns(UserWarning):
        rows = manifest_rows(ann, videos, tmp_path)
    assert rows["good"]["error"] is None and rows["good"]["source"] == "good.mp4"
    assert rows["gone"]["error"].startswith("missing file: no file with stem 'gone'")
    # the command line says it as one line for people, not as a Python warning with its source line
    proc = run_cli("--annotations", str(ann), "--videos", str(videos), "--stage", "ingest",
                   "--manifest", str(tmp_path / "cli.parquet"))
    said = [ln for ln in proc.stderr.splitlines() if "left out" in ln]
    assert len(said) == 1 and said[0].startswith("warning: --videos ") and "UserWarning" not in proc.stderr


def test_compressed_tar_or_a_single_file_as_videos_or_a_folder_as_annotations_is_one_clear_error(media, tmp_path):
    plain = tmp_path / "v.tar"
    with tarfile.open(plain, "w") as tar:
        tar.add(media["good"]["h264"], arcname="good.mp4")
    assert list(index_videos(plain)["relpath"]) == ["good.mp4"]
    gz = tmp_path / "v.tar.gz"
    with tarfile.open(gz, "w:gz") as tar:
        tar.add(media["good"]["h264"], arcname="good.mp4")
    with pytest.raises(VideosError, match="gzip-compressed file.*uncompressed .tar"):
        index_videos(gz)
    ann = webvid(tmp_path / "train.csv", [("good", "a clip")])
    proc = run_cli("--annotations", str(tmp_path), "--videos", str(plain), "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2
    assert_error_line(proc, "--annotations", "a folder")
    for videos, words in ((gz, ("gzip-compressed",)), (media["good"]["h264"], ("not a tar",))):
        proc = run_cli("--annotations", str(ann), "--videos", str(videos), "--out", str(tmp_path / "o"),
                       "--workers", "1", check=False)
        assert proc.returncode == 2
        assert_error_line(proc, "--videos", *words)


def test_a_thumbnail_never_replaces_its_video_and_two_candidates_are_ambiguous(media, tmp_path):
    videos = tmp_path / "videos"
    (videos / "a").mkdir(parents=True)
    (videos / "b").mkdir()
    clip = media["good"]["h264"].read_bytes()
    (videos / "v1.mp4").write_bytes(clip)
    (videos / "v1.jpg").write_bytes(b"\xff\xd8\xff thumbnail")  # sorts before v1.mp4
    (videos / "a" / "x.mp4").write_bytes(clip)
    (videos / "b" / "x.mp4").write_bytes(clip)
    (videos / "y.mp4").write_bytes(clip)
    (videos / "y.mkv").write_bytes(clip)
    (videos / "z.webm").write_bytes(clip)
    (videos / "z.m4a").write_bytes(b"its sound, downloaded apart")  # a sidecar
    (videos / "gone.jpg").write_bytes(b"\xff\xd8\xff the thumbnail of a video never downloaded")
    ann = webvid(tmp_path / "t.csv", [("v1", "c"), ("x", "c"), ("y", "c"), ("z", "c"), ("gone", "c")])
    rows = manifest_rows(ann, videos, tmp_path)
    assert rows["v1"]["source"] == "v1.mp4" and rows["v1"]["error"] is None
    assert rows["x"]["error"].startswith("ambiguous file: stem 'x' matches 2 files (a/x.mp4, b/x.mp4)")
    assert "y.mkv" in rows["y"]["error"] and "y.mp4" in rows["y"]["error"]
    assert rows["z"]["source"] == "z.webm" and rows["z"]["error"] is None
    assert rows["gone"]["error"].startswith("missing file: no file with stem 'gone'")


def test_ids_with_their_extension_or_other_unicode_form_find_their_file(media, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    clip = media["good"]["h264"].read_bytes()
    (videos / "clip20.mp4").write_bytes(clip)
    (videos / "clip.mp4").write_bytes(clip)
    decomposed = unicodedata.normalize("NFD", "vidéo_café")  # as a copy from macOS names it
    (videos / f"{decomposed}.mp4").write_bytes(clip)
    ann = tmp_path / "test.csv"
    ann.write_text("key,vid_key,video_id,sentence\n"
                   "r0,m0,clip20.mp4,a clip named with its extension\n"
                   f"r1,m1,{unicodedata.normalize('NFC', 'vidéo_café')},an accent spelt as one character\n"
                   "r2,m2,clip.2,an id with a dot is not clip.mp4\n")
    rows = manifest_rows(ann, videos, tmp_path, fmt="msrvtt_1ka")
    assert rows["clip20.mp4"]["error"] is None and rows["clip20.mp4"]["source"] == "clip20.mp4"
    assert rows["clip.2"]["error"].startswith("missing file: no file with stem 'clip.2'")
    nfc = unicodedata.normalize("NFC", "vidéo_café")
    assert rows[nfc]["error"] is None and rows[nfc]["source"] == f"{decomposed}.mp4"


def test_a_caption_over_several_lines_is_one_caption_and_an_open_quote_still_fails(tmp_path):
    good = tmp_path / "multiline.csv"
    good.write_text('key,vid_key,video_id,sentence\n'
                    'r0,m0,clip20,"A counter ticks.\nThen, it resets, flashes, and stops."\n'
                    'r1,m1,clip21,a plain caption\n')
    _, rows = read_rows(good, "msrvtt_1ka")
    rows = list(rows)
    assert [(r["video_id"], r["caption"], r["row_error"]) for r in rows] == [
        ("clip20", "A counter ticks. Then, it resets, flashes, and stops.", None),
        ("clip21", "a plain caption", None)]
    bad = tmp_path / "open.csv"
    bad.write_text('key,vid_key,video_id,sentence\n'
                   'r0,m0,clip20,"A quote that never closes\n'
                   'r1,m1,clip21,a plain caption\n')
    rows = list(read_rows(bad, "msrvtt_1ka")[1])
    assert rows[0]["row_error"].startswith("unterminated quote") and rows[1]["video_id"] == "clip21"
    # the open quote closed by a stray one rows later: the rows between are not swallowed
    stray = tmp_path / "stray.csv"
    stray.write_text('key,vid_key,video_id,sentence\n'
                     'r0,m0,clip20,"A quote that never closes\n'
                     'r1,m1,clip21,a plain caption\n'
                     'r2,m2,clip22,a board 5 by 3"\n')
    rows = list(read_rows(stray, "msrvtt_1ka")[1])
    assert rows[0]["row_error"].startswith("unterminated quote")
    assert [r["video_id"] for r in rows[1:]][:1] == ["clip21"] and rows[1]["row_error"] is None


def test_split_keeps_only_rows_of_that_split_and_a_split_with_no_row_is_an_error(tmp_path):
    ann = webvid(tmp_path / "w.csv", [("c1", "one", "train"), ("c2", "two", "test"), ("c3", "three", "")],
                 header=("videoid", "name", "split"))
    rows = list(read_rows(ann, "webvid", "train")[1])
    assert [(r["video_id"], r["split"]) for r in rows] == [("c1", "train"), ("c3", "train")]
    qa = tmp_path / "qa.json"
    qa.write_text(json.dumps([{"question": "q?", "answer": "a", "video_id": 1, "split": "test"},
                              {"question": "q?", "answer": "a", "video_id": 2, "split": "train"}]))
    assert [r["video_id"] for r in read_rows(qa, "msrvtt_qa", "train")[1]] == ["video2"]
    videos = tmp_path / "videos"
    videos.mkdir()
    ann = webvid(tmp_path / "w2.csv", [("c1", "one", "train"), ("c2", "two", "test")],
                 header=("videoid", "name", "split"))
    proc = run_cli("--annotations", str(ann), "--videos", str(videos), "--split", "val",
                   "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2
    assert_error_line(proc, "--split 'val'", "no row")
    empty = webvid(tmp_path / "empty.csv", [])  # an empty file is an empty set, with or without --split
    assert manifest_rows(empty, videos, tmp_path, split="val") == {}


def test_a_nan_caption_is_missing_not_the_text_nan(tmp_path):
    ann = tmp_path / "MSR_VTT.json"
    ann.write_text('{"videos": [{"video_id": "v1", "split": "test"}], "annotations": ['
                   '{"image_id": "v1", "caption": NaN}, {"image_id": "v1", "caption": "a real one"}]}')
    rows = list(read_rows(ann, "msrvtt")[1])
    assert [(r["caption"], r["row_error"]) for r in rows] == [
        (None, "empty caption (missing)"), ("a real one", None)]


def test_a_rerun_refused_for_another_plan_keeps_the_manifest_its_shards_came_from(media, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "good.mp4").write_bytes(media["good"]["h264"].read_bytes())
    ann = webvid(tmp_path / "train.csv", [("good", "a clip"), ("gone", "no such video")])
    out = tmp_path / "out"
    run_cli("--annotations", str(ann), "--videos", str(videos), "--out", str(out), "--workers", "1",
            "preprocess.cache_dir=null")
    before = (out / "manifest.parquet").read_bytes()
    (videos / "gone.mp4").write_bytes(media["good"]["h264"].read_bytes())  # the fix: a new plan
    proc = run_cli("--annotations", str(ann), "--videos", str(videos), "--out", str(out), "--workers", "1",
                   "preprocess.cache_dir=null", check=False)
    assert_error_line(proc, "holds shards of another plan")
    assert (out / "manifest.parquet").read_bytes() == before
    assert not [p.name for p in out.iterdir() if p.name.endswith(".new.parquet")]


@pytest.mark.parametrize("shard_samples", [256, 1], ids=["one-shard", "apart"])
def test_a_video_whose_window_takes_another_videos_key_fails_as_a_collision(media, tmp_path, shard_samples):
    """The same video fails whether the two fall in one shard or in two (which are written
    apart and cannot see each other's durations)."""
    import subprocess

    videos = tmp_path / "videos"
    videos.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10",
                    "-t", "2.4", "-c:v", "libx264", "-preset", "ultrafast", str(videos / "clip.mp4")], check=True)
    (videos / "clip_w001.mp4").write_bytes(media["good"]["h264"].read_bytes())
    ann = webvid(tmp_path / "train.csv", [("clip", "a long clip"), ("clip_w001", "a short clip")])
    out = tmp_path / "out"
    run_cli("--annotations", str(ann), "--videos", str(videos), "--out", str(out), "--workers", "1",
            "preprocess.cache_dir=null", "preprocess.max_window_s=1.0", f"preprocess.shard_samples={shard_samples}")
    stats = {r["video_id"]: r for r in pq.read_table(out / "stats.parquet").to_pylist()}
    assert stats["clip_w001"]["status"] == "ok"
    assert stats["clip"]["status"] == "failed"
    assert stats["clip"]["error"].startswith("key collision: this video is cut into windows")
    assert "'clip_w001' is the key of another video" in stats["clip"]["error"]
    names = []
    for shard in sorted(out.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            names += tar.getnames()
    assert sorted(names) == ["clip_w001.json", "clip_w001.mp4"]  # one sample of that key in all shards


def test_ffmpeg_error_texts_hold_no_heap_address():
    """stats.parquet is a DVC output: a failure's text must be the same bytes on every run."""
    from preprocess.probe import stderr_tail

    runs = [f"[mov,mp4 @ 0x{a:x}] moov atom not found\n/tmp/src-1.mp4: Invalid data found".encode()
            for a in (0x562909E87180, 0x55D0C0FFEE00)]
    tails = {stderr_tail(r, hide="/tmp/src-1.mp4") for r in runs}
    assert tails == {"[mov,mp4] moov atom not found | Invalid data found"}


def test_utf16_annotations_control_characters_and_a_re_appended_tar_member(media, tmp_path):
    from preprocess.formats import AnnotationError

    utf16 = tmp_path / "unicode.csv"
    utf16.write_text("videoid,name\nv1,a clip\n", encoding="utf-16")
    with pytest.raises(AnnotationError, match="UTF-16 text; save it as UTF-8"):
        read_rows(utf16, "webvid")
    ann = webvid(tmp_path / "ctl.csv", [("v1", "a red\x00 circle\x1b[31m moves")])
    assert [r["caption"] for r in read_rows(ann, "webvid")[1]] == ["a red circle moves"]
    tar_path = tmp_path / "v.tar"
    (tmp_path / "clip.mp4").write_bytes(b"an old broken copy")
    with tarfile.open(tar_path, "w") as tar:
        tar.add(tmp_path / "clip.mp4", arcname="clip.mp4")
    (tmp_path / "clip.mp4").write_bytes(media["good"]["h264"].read_bytes())
    with tarfile.open(tar_path, "a") as tar:  # tar -r: the newer copy appended
        tar.add(tmp_path / "clip.mp4", arcname="clip.mp4")
    files = index_videos(tar_path)
    assert list(files["relpath"]) == ["clip.mp4"]
    assert int(files["size"].iloc[0]) == media["good"]["h264"].stat().st_size
    with tarfile.open(tar_path, "a", encoding="utf-8", errors="surrogateescape") as tar:
        info = tarfile.TarInfo(os.fsdecode(b"caf\xe9.mp4"))
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.warns(UserWarning, match=r"1 file\(s\) left out: caf\\xe9.mp4 \(file name is not UTF-8\)"):
        assert list(index_videos(tar_path)["relpath"]) == ["clip.mp4"]


def test_a_cache_entry_of_an_older_version_is_not_served(media, tmp_path, monkeypatch):
    """The checks a transcode passes changed (the DURATION tag, too few frames) without any
    setting changing: an entry an older version wrote must not be served past them."""
    from preprocess import normalise
    from preprocess.probe import probe_source

    cfg = PreprocessConfig(cache_dir=str(tmp_path / "cache"))
    src = media["good"]["h264"]
    probe = probe_source(src, cfg)
    first = normalise.cached_normalise(src, probe, tmp_path / "w1", "v", cfg)
    assert normalise.cached_normalise(src, probe, tmp_path / "w2", "v", cfg)[0]["path"] == first[0]["path"]
    monkeypatch.setattr(normalise, "CACHE_VERSION", normalise.CACHE_VERSION + 1)
    assert normalise.cached_normalise(src, probe, tmp_path / "w3", "v", cfg)[0]["path"] != first[0]["path"]
