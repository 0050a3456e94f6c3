"""Each annotation format, read from a small file in its real layout, into manifest samples."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.config import ConfigError, section
from preprocess.api import build_manifest
from preprocess.config import PreprocessConfig
from preprocess.formats import AnnotationError, detect_format
from preprocess.ingest import sanitise_key


@pytest.fixture()
def videos(tmp_path) -> Path:
    """Placeholder files: ingest joins by name only (probing happens when sharding)."""
    folder = tmp_path / "videos"
    for rel in ["pg1/1001.mp4", "video7.mp4", "video8.mp4", "vid3.avi", "clip a.mp4",
                "tumblr_x1.gif", "tumblr_x2.gif", "v_abc.mp4", "didemo_1.mov", "act.webm"]:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(b"x")
    return folder


def manifest(ann: Path, videos: Path, fmt=None, split=None) -> dict[str, dict]:
    path = build_manifest(ann, videos, ann.parent / "m.parquet", fmt, split, PreprocessConfig(workers=1))
    return {r["key"]: r for r in pq.read_table(path).to_pylist()}


def test_webvid_csv(tmp_path, videos):
    ann = tmp_path / "results_2M_train.csv"
    ann.write_text("videoid,contentUrl,duration,page_dir,name\n"
                   "1001,https://x/1001.mp4,PT00H00M11S,pg1,\"Aerial shot, winter forest\"\n"
                   "2002,https://x/2002.mp4,PT00H00M09S,pg9,A missing video\n"
                   "1001,https://x/1001.mp4,PT00H00M11S,pg1,a second caption\n")
    assert detect_format(ann) == "webvid"
    m = manifest(ann, videos)
    assert m["1001"]["captions"] == ["Aerial shot, winter forest", "a second caption"]
    assert m["1001"]["source"] == "pg1/1001.mp4" and m["1001"]["error"] is None
    assert m["2002"]["error"].startswith("missing file")


def test_msrvtt_json_with_split(tmp_path, videos):
    ann = tmp_path / "MSR_VTT.json"
    ann.write_text(json.dumps({
        "videos": [{"video_id": "video7", "split": "train"}, {"video_id": "video8", "split": "test"}],
        "annotations": [{"image_id": "video7", "caption": "a man talks", "id": 0},
                        {"image_id": "video8", "caption": "a dog runs", "id": 1},
                        {"image_id": "video7", "caption": "someone speaks", "id": 2},
                        {"image_id": "video7", "caption": "a man talks", "id": 3}]}))
    assert detect_format(ann) == "msrvtt"
    m = manifest(ann, videos)
    assert m["video7"]["captions"] == ["a man talks", "someone speaks"]
    assert m["video7"]["row_errors"][2].startswith("duplicate row")
    assert m["video7"]["split"] == "train" and m["video8"]["split"] == "test"
    assert set(manifest(ann, videos, split="test")) == {"video8"}


def test_msrvtt_1ka_csv(tmp_path, videos):
    ann = tmp_path / "MSRVTT_JSFUSION_test.csv"
    ann.write_text("key,vid_key,video_id,sentence\nret0,msr7,video7,a man is talking\n"
                   "ret1,msr8,video8,a dog runs on grass\nret2,msr7,video7,another sentence\n")
    assert detect_format(ann) == "msrvtt_1ka"
    m = manifest(ann, videos)
    assert m["video8"]["captions"] == ["a dog runs on grass"] and m["video8"]["split"] == "test"
    # one caption per video in this list: a second row of video7 is a duplicate key
    assert m["video7"]["captions"] == ["a man is talking"]
    assert m["video7"]["row_errors"][1].startswith("duplicate key: video 'video7' already listed at")


def test_clipbert_jsonl(tmp_path, videos):
    ann = tmp_path / "msrvtt_retrieval_train.jsonl"
    ann.write_text('{"caption": "first", "clip_name": "video7"}\n{"caption": "second", "clip_name": "video7"}\n'
                   "not json\n")
    assert detect_format(ann) == "clipbert"
    m = manifest(ann, videos)
    assert m["video7"]["captions"] == ["first", "second"]
    bad = [r for r in m.values() if r["video_id"] is None]
    assert len(bad) == 1 and bad[0]["error"].startswith("line is not valid JSON")


def test_singularity_json_list(tmp_path, videos):
    ann = tmp_path / "msrvtt_ret_train7k.json"
    ann.write_text(json.dumps([{"image": "clip a.mp4", "caption": "one"},
                               {"video": "video8.mp4", "caption": ["two", "three"]}]))
    assert detect_format(ann) == "singularity"
    m = manifest(ann, videos)
    assert m["clip_a"]["captions"] == ["one"] and m["clip_a"]["source"] == "clip a.mp4"
    assert m["video8"]["captions"] == ["two", "three"]


def test_paragraph_formats(tmp_path, videos):
    sing = tmp_path / "didemo_ret_train.json"
    sing.write_text(json.dumps([{"video": "didemo_1.mov", "caption": ["A man walks.", "He sits."]}]))
    assert manifest(sing, videos, fmt="paragraph")["didemo_1"]["captions"] == ["A man walks. He sits."]
    didemo = tmp_path / "train_data.json"
    didemo.write_text(json.dumps([{"video": "didemo_1.mov", "description": "a man walks", "times": [[0, 1]]},
                                  {"video": "didemo_1.mov", "description": "he sits", "times": [[2, 3]]}]))
    assert detect_format(didemo) == "paragraph"
    assert manifest(didemo, videos)["didemo_1"]["captions"] == ["a man walks he sits"]
    anet = tmp_path / "anet_train.json"
    anet.write_text(json.dumps({"v_abc": {"duration": 9.0, "timestamps": [[0, 3], [3, 9]],
                                          "sentences": ["Someone cooks.", " It is done. "]}}))
    assert detect_format(anet) == "paragraph"
    assert manifest(anet, videos)["v_abc"]["captions"] == ["Someone cooks. It is done."]


def test_msrvtt_and_msvd_qa(tmp_path, videos):
    ann = tmp_path / "train.json"
    ann.write_text(json.dumps([
        {"question": "what is the man doing?", "answer": "talk", "video_id": 7, "answer_type": "what", "id": 0},
        {"question": "who runs?", "answer": "dog", "video_id": 7, "answer_type": "who", "id": 1},
        {"question": "", "answer": "x", "video_id": 7, "answer_type": "what", "id": 2}]))
    assert detect_format(ann) == "msrvtt_qa"
    m = manifest(ann, videos)
    qa = json.loads(m["video7"]["qa"])
    assert [q["answer"] for q in qa] == ["talk", "dog"] and qa[0]["answer_type"] == "what"
    assert m["video7"]["row_errors"][2] == "empty question" and m["video7"]["captions"] == []
    assert set(manifest(ann, videos, fmt="msvd_qa")) == {"vid7"}
    msvd = tmp_path / "msvd.json"
    msvd.write_text(json.dumps([{"question": "q?", "answer": "a", "video_id": 3, "answer_type": "what"}]))
    assert manifest(msvd, videos, fmt="msvd_qa")["vid3"]["source"] == "vid3.avi"


def test_tgif_qa_multiple_choice_and_frameqa(tmp_path, videos):
    mc = tmp_path / "action_train.jsonl"
    mc.write_text("\n".join(json.dumps(r) for r in [
        {"gif_name": "tumblr_x1", "question": "what does the cat do 3 times?",
         "options": ["jump", "nod", "blink", "spin", "run"], "answer": 2},
        {"gif_name": "tumblr_x2", "question": "what?", "options": ["a", "b"], "answer": 7}]))
    assert detect_format(mc) == "tgif_qa"
    m = manifest(mc, videos)
    q = json.loads(m["tumblr_x1"]["qa"])[0]
    assert q["answer"] == "blink" and q["answer_idx"] == 2 and len(q["options"]) == 5
    assert m["tumblr_x2"]["row_errors"][0].startswith("answer 7 is not an index")
    frame = tmp_path / "frameqa_test.json"
    frame.write_text(json.dumps([{"gif_name": "tumblr_x1", "question": "what color is the cat?",
                                  "answer": "white", "answer_type": "color"}]))
    q = json.loads(manifest(frame, videos)["tumblr_x1"]["qa"])[0]
    assert q["answer"] == "white" and q["options"] is None
    tsv = tmp_path / "Train_action_question.tsv"
    tsv.write_text("gif_name\tquestion\ta1\ta2\ta3\ta4\ta5\tanswer\tvid_id\tkey\n"
                   "tumblr_x2\twhat does he do?\tnod\twave\tsit\trun\tjump\t1\tv1\t1\n")
    q = json.loads(manifest(tsv, videos)["tumblr_x2"]["qa"])[0]
    assert q["answer"] == "wave" and q["answer_idx"] == 1


def test_videos_as_tar_found_by_stem(tmp_path, videos):
    tar_path = tmp_path / "videos.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(videos / "video7.mp4", arcname="videos/video7.mp4")
    ann = tmp_path / "MSR_VTT.json"
    ann.write_text(json.dumps({"annotations": [{"image_id": "video7", "caption": "c"}]}))
    row = manifest(ann, tar_path)["video7"]
    assert row["source"] == "videos/video7.mp4" and row["offset"] > 0 and row["size"] == 1
    assert row["container"] == str(tar_path.resolve())


def test_manifest_inside_a_project_hashes_the_same_in_every_clone(tmp_path, monkeypatch):
    """Inside the working directory the manifest names its tar relative to itself, so two clones
    of a project at different paths write the same bytes (and dvc.lock does not change), while
    reading a slice still gives a path ffmpeg can open from anywhere."""
    import hashlib
    import shutil

    from preprocess.ingest import read_slice

    digests, slices = [], []
    for clone in ["a", "elsewhere/b"]:
        root = tmp_path / clone
        (root / "data").mkdir(parents=True)
        with tarfile.open(root / "data" / "videos.tar", "w") as tar:
            (tmp_path / "video7.mp4").write_bytes(b"x")
            tar.add(tmp_path / "video7.mp4", arcname="videos/video7.mp4")
        (root / "data" / "MSR_VTT.json").write_text(json.dumps({"annotations": [{"image_id": "video7", "caption": "c"}]}))
        monkeypatch.chdir(root)
        path = build_manifest(Path("data/MSR_VTT.json"), Path("data/videos.tar"), Path("data/manifests/m.parquet"),
                              None, None, PreprocessConfig(workers=1))
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
        assert pq.read_table(path).to_pylist()[0]["container"] == "../videos.tar"
        monkeypatch.chdir(tmp_path)  # read from another working directory
        slices.append(read_slice(root / path, 0, 1)[0]["container"])
        assert slices[-1] == str((root / "data" / "videos.tar").resolve())
    assert digests[0] == digests[1]
    # outside the working directory the path stays absolute: nothing to keep it relative to
    shutil.rmtree(tmp_path / "a" / "data" / "manifests")
    monkeypatch.chdir(tmp_path / "elsewhere")
    path = build_manifest(tmp_path / "a" / "data" / "MSR_VTT.json", tmp_path / "a" / "data" / "videos.tar",
                          tmp_path / "a" / "data" / "manifests" / "m.parquet", None, None, PreprocessConfig(workers=1))
    assert pq.read_table(path).to_pylist()[0]["container"] == str((tmp_path / "a" / "data" / "videos.tar").resolve())


def test_keys_are_stable_under_row_order(tmp_path, videos):
    rows = [{"image_id": v, "caption": f"{v} {i}"} for v in ["video7", "video8", "b.c d"] for i in range(3)]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"annotations": rows}))
    b.write_text(json.dumps({"annotations": rows[::-1]}))
    ma, mb = manifest(a, videos), manifest(b, videos)
    assert set(ma) == set(mb) == {"video7", "video8", "b_c_d"}
    assert {k: sorted(v["captions"]) for k, v in ma.items()} == {k: sorted(v["captions"]) for k, v in mb.items()}
    assert sanitise_key("a.b/c d-é") == "a_b_c_d-é"


def test_unknown_format_is_a_clear_error(tmp_path):
    ann = tmp_path / "x.json"
    ann.write_text(json.dumps([{"foo": 1}]))
    with pytest.raises(AnnotationError, match="pass --format"):
        detect_format(ann)


def test_config_validation():
    assert section({}, PreprocessConfig, "preprocess").short_side == 128
    with pytest.raises(ConfigError, match="preprocess.short_side"):
        section({"preprocess": {"short_side": 127}}, PreprocessConfig, "preprocess")
    with pytest.raises(ConfigError, match="preprocess.workers"):
        section({"preprocess": {"workers": 0}}, PreprocessConfig, "preprocess")
    with pytest.raises(ConfigError, match="preprocess.shard_sample"):
        section({"preprocess": {"shard_sample": 3}}, PreprocessConfig, "preprocess")
