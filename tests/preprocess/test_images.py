"""Image-caption collections through python -m preprocess: CC3M / CC12M TSV, COCO captions JSON,
img2dataset tar and Parquet. Every input row must end as one stats row, with the reason when it
fails; good images become ``<key>.jpg`` samples resized to ``short_side``."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.preprocess.helpers import params_file, run_cli

SHORT_SIDE = 32


def jpeg_bytes(w: int, h: int, colour: tuple[int, int, int]) -> bytes:
    im = Image.new("RGB", (w, h), colour)
    for x in range(0, w, 7):  # some structure, so the JPEG is not trivially small
        im.putpixel((x, h // 2), (255, 255, 255))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def png_bytes(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (0, 128, 255)).save(buf, format="PNG")
    return buf.getvalue()


GOOD = jpeg_bytes(120, 80, (200, 30, 30))
TRUNCATED = GOOD[: len(GOOD) // 2]  # a cut-off download
TINY = jpeg_bytes(8, 8, (0, 200, 0))  # below min_side 16


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    (folder / "good.jpg").write_bytes(GOOD)
    (folder / "sub" / "wide.png").write_bytes(png_bytes(100, 40))
    (folder / "cut.jpg").write_bytes(TRUNCATED)
    (folder / "tiny.jpg").write_bytes(TINY)
    (folder / "text.jpg").write_bytes(b"this is not an image at all")
    return folder


def run(tmp: Path, ann: Path, videos: Path | None, *extra: str) -> tuple[Path, list[dict], dict]:
    params = params_file(tmp, short_side=SHORT_SIDE, cache_dir=None, shard_samples=3, max_caption_chars=80)
    out = tmp / "shards"
    args = ["--annotations", str(ann), "--out", str(out), "--params", str(params), "--workers", "1", *extra]
    if videos is not None:
        args += ["--videos", str(videos)]
    run_cli(*args)
    stats = pq.read_table(out / "stats.parquet").to_pylist()
    return out, stats, samples_in(out)


def samples_in(out: Path) -> dict[str, dict]:
    samples: dict[str, dict] = {}
    for shard in sorted(out.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar:
                key, ext = m.name.split(".", 1)
                samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return samples


def by_origin(stats: list[dict]) -> dict[str, dict]:
    return {r["origin"]: r for r in stats}


def check_image_sample(sample: dict, captions: list[str], src_size: tuple[int, int]) -> None:
    assert set(sample) == {"jpg", "json"}, sorted(sample)
    meta = json.loads(sample["json"])
    assert meta["media"] == "image" and meta["captions"] == captions
    with Image.open(io.BytesIO(sample["jpg"])) as im:
        assert im.format == "JPEG"
        w, h = im.size
    assert min(w, h) == SHORT_SIDE, (w, h)
    # the aspect ratio survives (to the even-side rounding)
    assert abs(w / h - src_size[0] / src_size[1]) < 0.1
    assert (meta["video"]["num_frames"], meta["video"]["width"], meta["video"]["height"]) == (1, w, h)
    assert (meta["source_probe"]["width"], meta["source_probe"]["height"]) == src_size


def test_cc3m_tsv(tmp_path, images):
    lines = [
        "a red square with a line\tgood.jpg",                 # CC3M order: caption, file
        "sub/wide.png\ta wide blue png",                       # CC12M order: file, caption
        "a download\thttps://example.com/pic.jpg",             # URL: no network here
        "a missing image\tnot_there.jpg",
        "a cut-off jpeg\tcut.jpg",
        "a tiny image\ttiny.jpg",
        "text named jpg\ttext.jpg",
        "too long " * 12 + "\tgood.jpg",                       # > max_caption_chars 80
        "three\tfields\there",
    ]
    ann = tmp_path / "Train_GCC-training.tsv"
    ann.write_text("\n".join(lines) + "\n")
    out, stats, samples = run(tmp_path, ann, images)
    assert len(stats) == len(lines), "every input row is one stats row"
    rows = by_origin(stats)
    name = ann.name
    ok = {o for o, r in rows.items() if r["status"] == "ok"}
    assert ok == {f"{name}:line 1", f"{name}:line 2"}
    reasons = {int(o.split()[-1]): r["error"] for o, r in rows.items() if r["status"] == "failed"}
    assert reasons[3].startswith("URL without network") and "https://example.com/pic.jpg" in reasons[3]
    assert reasons[4].startswith("missing file") and "not_there" in reasons[4]
    assert reasons[5].startswith("truncated or corrupt image"), reasons[5]
    assert reasons[6].startswith("too small") and "8x8" in reasons[6]
    assert reasons[7].startswith("not an image file"), reasons[7]
    assert reasons[8].startswith("caption too long"), reasons[8]
    assert "3 tab-separated fields" in reasons[9]
    check_image_sample(samples["good"], ["a red square with a line"], (120, 80))
    check_image_sample(samples["wide"], ["a wide blue png"], (100, 40))
    assert set(samples) == {"good", "wide"}
    assert rows[f"{name}:line 1"]["out_num_frames"] == 1


@pytest.mark.parametrize("name, text", [
    ("cc.tsv", "url\tcaption\tsimilarity\ngood.jpg\thello \"there\"\t0.3\nhttps://a/b.jpg\tgone\t0.1\n"),
    ("cc.csv", 'caption,url\n"hello ""there""",good.jpg\ngone,https://a/b.jpg\n'),
])
def test_caption_url_tables_with_a_header(tmp_path, images, name, text):
    """img2dataset's input lists: a header naming caption and url, in any order, extra columns."""
    ann = tmp_path / name
    ann.write_text(text)
    _, stats, samples = run(tmp_path, ann, images)
    assert [r["status"] for r in stats] == ["ok", "failed"]
    assert stats[1]["error"].startswith("URL without network")
    assert json.loads(samples["good"]["json"])["format"] == "cc3m"
    assert json.loads(samples["good"]["json"])["captions"] == ['hello "there"']


def test_coco_json(tmp_path, images):
    coco = {
        "info": {}, "licenses": [],
        "images": [{"id": 1, "file_name": "good.jpg", "width": 120, "height": 80},
                   {"id": 2, "file_name": "cut.jpg"}, {"id": 3, "file_name": "tiny.jpg"},
                   {"id": 4, "file_name": "gone.jpg"}],
        "annotations": [
            {"id": 10, "image_id": 1, "caption": "A red square."},
            {"id": 11, "image_id": 1, "caption": "  a  square that is red "},
            {"id": 12, "image_id": 2, "caption": "cut"},
            {"id": 13, "image_id": 3, "caption": "tiny"},
            {"id": 14, "image_id": 4, "caption": "gone"},
            {"id": 15, "image_id": 99, "caption": "no such image"},
            {"id": 16, "image_id": 1, "caption": None},
        ],
    }
    ann = tmp_path / "captions_train2014.json"
    ann.write_text(json.dumps(coco))
    _, stats, samples = run(tmp_path, ann, images)
    assert len(stats) == len(coco["annotations"])
    rows = {int(o.split("[")[1].rstrip("]")): r for o, r in by_origin(stats).items()}
    assert [rows[i]["status"] for i in range(7)] == ["ok", "ok", "failed", "failed", "failed", "failed", "failed"]
    assert rows[2]["error"].startswith("truncated or corrupt image")
    assert rows[3]["error"].startswith("too small")
    assert rows[4]["error"].startswith("missing file") and "gone.jpg" in rows[4]["error"]
    assert "image_id 99 is not in images[]" in rows[5]["error"]
    assert rows[6]["error"].startswith("empty caption")
    check_image_sample(samples["good"], ["A red square.", "a square that is red"], (120, 80))
    assert json.loads(samples["good"]["json"])["format"] == "coco"


def write_wds(path: Path, samples: dict[str, dict[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, members in samples.items():
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_img2dataset_webdataset_tar(tmp_path):
    cap = lambda text: json.dumps({"caption": text, "url": "https://x/y.jpg", "status": "success"}).encode()  # noqa: E731
    ann = tmp_path / "00000.tar"
    write_wds(ann, {
        "000000000": {"jpg": GOOD, "txt": b"a red square", "json": cap("a red square")},
        "000000001": {"jpg": jpeg_bytes(64, 96, (9, 9, 9)), "json": cap("only the json has it")},
        "000000002": {"jpg": TRUNCATED, "txt": b"cut off"},
        "000000003": {"jpg": TINY, "txt": b"tiny"},
        "000000004": {"txt": b"no image here", "json": cap("no image here")},
        "000000005": {"jpg": GOOD, "txt": b""},
    })
    # --videos omitted: the tar holds its own images
    _, stats, samples = run(tmp_path, ann, None)
    assert len(stats) == 6
    rows = {o.split(":")[1]: r for o, r in by_origin(stats).items()}
    assert {k for k, r in rows.items() if r["status"] == "ok"} == {"000000000", "000000001"}
    assert rows["000000002"]["error"].startswith("truncated or corrupt image")
    assert rows["000000003"]["error"].startswith("too small")
    assert "no image member" in rows["000000004"]["error"]
    assert rows["000000005"]["error"].startswith("empty caption")
    check_image_sample(samples["000000000"], ["a red square"], (120, 80))
    check_image_sample(samples["000000001"], ["only the json has it"], (64, 96))


def test_img2dataset_parquet(tmp_path):
    table = pa.table({
        "key": ["000000000", "000000001", "000000002", "000000003", "000000004"],
        "caption": ["a red square", "cut off", "tiny", "never downloaded", "a link only"],
        "url": ["https://a/0.jpg", "https://a/1.jpg", "https://a/2.jpg", "https://a/3.jpg", "https://a/4.jpg"],
        "status": ["success", "success", "success", "failed_to_download", "success"],
        "error_message": [None, None, None, "HTTP 404", None],
        "jpg": [GOOD, TRUNCATED, TINY, None, None],
    })
    ann = tmp_path / "00000.parquet"
    pq.write_table(table, ann, row_group_size=2)
    _, stats, samples = run(tmp_path, ann, None)
    assert len(stats) == 5
    rows = {int(o.split()[-1]): r for o, r in by_origin(stats).items()}
    assert rows[0]["status"] == "ok"
    assert rows[1]["error"].startswith("truncated or corrupt image")
    assert rows[2]["error"].startswith("too small")
    assert "did not download it" in rows[3]["error"] and "HTTP 404" in rows[3]["error"]
    assert rows[4]["error"].startswith("URL without network")
    check_image_sample(samples["000000000"], ["a red square"], (120, 80))


def test_caption_url_parquet_without_bytes(tmp_path):
    """The metadata Parquet (url, caption) alone: every row fails, each saying why."""
    ann = tmp_path / "list.parquet"
    pq.write_table(pa.table({"url": ["https://a/0.jpg", None], "caption": ["x", "y"]}), ann)
    _, stats, samples = run(tmp_path, ann, None)
    assert [r["status"] for r in stats] == ["failed", "failed"]
    assert stats[0]["error"].startswith("URL without network")
    assert "no url, no jpg bytes" in stats[1]["error"]
    assert samples == {}


def test_normalised_jpeg_is_deterministic(tmp_path, images):
    ann = tmp_path / "cc.tsv"
    ann.write_text("one\tgood.jpg\n")
    outputs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        outputs.append(run(tmp_path / name, ann, images)[2]["good"]["jpg"])
    assert outputs[0] == outputs[1]


def test_singularity_image_list(tmp_path, images):
    """The pretrain_webvid_cc3m preset's CC3M form: a Singularity list naming images."""
    ann = tmp_path / "cc3m_train.json"
    ann.write_text(json.dumps([{"image": "good.jpg", "caption": "a red square"},
                               {"image": "tiny.jpg", "caption": "tiny"}]))
    _, stats, samples = run(tmp_path, ann, images)
    assert [r["status"] for r in stats] == ["ok", "failed"]
    assert stats[1]["error"].startswith("too small")
    check_image_sample(samples["good"], ["a red square"], (120, 80))


def test_side_limits_checked_from_the_header(tmp_path):
    from preprocess.config import PreprocessConfig
    from preprocess.images import normalise_image
    from preprocess.probe import BadVideo

    src = tmp_path / "wide.jpg"
    src.write_bytes(GOOD)  # 120x80
    with pytest.raises(BadVideo, match=r"absurd frame size: image is 120x80, a side > max_side 100"):
        normalise_image(src, tmp_path, "k", PreprocessConfig(max_side=100, cache_dir=None))
    assert not (tmp_path / "k.jpg").exists()


@pytest.mark.parametrize("name, content, words", [
    ("bad.json", {"annotations": [], "images": {}}, ["bad.json", "needs 'images' and 'annotations' lists"]),
    ("bad.parquet", None, ["bad.parquet", "needs a 'caption' column", "['text', 'url']"]),
])
def test_unreadable_collections_are_one_clear_error(tmp_path, name, content, words):
    from tests.preprocess.helpers import assert_error_line

    ann = tmp_path / name
    if content is None:
        pq.write_table(pa.table({"url": ["https://a/0.jpg"], "text": ["x"]}), ann)
    else:
        ann.write_text(json.dumps(content))
    fmt = ["--format", "coco"] if name.endswith(".json") else []
    proc = run_cli("--annotations", str(ann), "--videos", str(tmp_path), "--out", str(tmp_path / "o"), *fmt,
                   check=False)
    assert proc.returncode == 2
    assert_error_line(proc, *words)


def test_several_img2dataset_tars_in_one_run(tmp_path):
    """img2dataset writes 00000.tar, 00001.tar, ...: all of them in one run, images found in each."""
    write_wds(tmp_path / "00000.tar", {"000000000": {"jpg": GOOD, "txt": b"first tar"},
                                       "000000001": {"jpg": TINY, "txt": b"tiny"}})
    write_wds(tmp_path / "00001.tar", {"000010000": {"jpg": jpeg_bytes(64, 96, (1, 2, 3)), "txt": b"second tar"}})
    params = params_file(tmp_path, short_side=SHORT_SIDE, cache_dir=None, shard_samples=2)
    out = tmp_path / "shards"
    run_cli("--annotations", str(tmp_path / "00000.tar"), str(tmp_path / "00001.tar"), "--out", str(out),
            "--params", str(params), "--workers", "1")
    stats = {r["key"]: r for r in pq.read_table(out / "stats.parquet").to_pylist()}
    assert {k: r["status"] for k, r in stats.items()} == {"000000000": "ok", "000000001": "failed", "000010000": "ok"}
    assert stats["000000001"]["error"].startswith("too small")
    samples = samples_in(out)
    check_image_sample(samples["000000000"], ["first tar"], (120, 80))
    check_image_sample(samples["000010000"], ["second tar"], (64, 96))


def test_ffmpeg_is_needed_by_videos_only(tmp_path, images, media):
    """A missing ffmpeg stops a video collection with one line naming preprocess.ffmpeg before any
    shard is planned (it used to fail at the first transcode, leaving the plan behind); a
    collection of still images, which PIL reads, runs without it."""
    from tests.preprocess.helpers import assert_error_line

    ann = tmp_path / "cc.tsv"
    ann.write_text("a red square with a line\tgood.jpg\n")
    out, stats, _ = run(tmp_path, ann, images, "preprocess.ffmpeg=/nonexistent/ffmpeg")
    assert [r["status"] for r in stats] == ["ok"]

    csv = tmp_path / "webvid.csv"
    csv.write_text("videoid,name,page_dir\nh264,a clip,x\n")
    params = params_file(tmp_path, short_side=SHORT_SIDE, cache_dir=None)
    videos_out = tmp_path / "video-shards"
    proc = run_cli("--annotations", str(csv), "--videos", str(media["videos"]), "--out", str(videos_out),
                   "--params", str(params), "--format", "webvid", "preprocess.ffmpeg=/nonexistent/ffmpeg", check=False)
    assert_error_line(proc, "preprocess.ffmpeg", "/nonexistent/ffmpeg")
    assert proc.returncode == 2
    assert not (videos_out / "_plan.json").exists() and not list(videos_out.glob("shard-*.tar"))
