"""Annotation formats: each adapter turns one annotation file into input rows.

An input row is one caption or one question about one video, exactly as the file lists it:

    {"origin": "train.csv:line 7", "video_id": "clip_00042", "want_path": "pg/clip_00042.mp4",
     "caption": "a red circle ..." | None, "qa": {...} | None, "split": "train" | None,
     "row_error": None | "why this row is unusable"}

Rows keep their order and are never dropped here: a row that cannot be read (a caption that
is not text, a record without a video id) carries ``row_error`` and ends as a ``failed`` row in
stats.parquet. Grouping rows into samples happens in :mod:`preprocess.ingest`.

Supported formats (``--format``; auto-detected from the file's name and first records):

- ``webvid``        WebVid CSV: videoid, name (caption), page_dir, duration, contentUrl
- ``msrvtt``        MSR_VTT.json: {"videos": [{"video_id", "split"}], "annotations": [{"image_id", "caption"}]}
- ``msrvtt_1ka``    the 1k-A test list (MSRVTT_JSFUSION_test.csv): key, vid_key, video_id, sentence
- ``clipbert``      ClipBERT / ALPRO JSONL: {"caption", "clip_name"}
- ``singularity``   Singularity / VindLU JSON list: {"image"|"video", "caption": str | list}
- ``paragraph``     paragraph retrieval (DiDeMo, ActivityNet Captions): all captions of a video
                    joined into one paragraph; reads Singularity lists, DiDeMo {"video",
                    "description"} lists and ActivityNet {"v_id": {"sentences": [...]}} dicts
- ``msrvtt_qa``     MSRVTT-QA / MSVD-QA: [{"question", "answer", "video_id", "answer_type"}]
                    (an integer video_id n names the file ``video<n>``)
- ``msvd_qa``       as msrvtt_qa, but an integer video_id n names the file ``vid<n>``
- ``tgif_qa``       TGIF-QA Action/Transition {"gif_name", "question", "options", "answer": int}
                    and FrameQA {"gif_name", "question", "answer", "answer_type"} (JSON, JSONL or
                    the original tab-separated files)
- ``msrvtt_mc``     MSRVTT-MC (caption multiple choice): Singularity/VindLU JSON
                    [{"video", "caption": [5], "answer": int}] or ClipBERT JSONL
                    {"clip_name", "options": [5], "answer": int, "qid"}
- ``lsmdc_mc``      LSMDC16 multiple choice, tab-separated, no header: clip id, 4 time stamps, then
                    5 sentences and a 1-based answer index (public test), or the correct sentence
                    and 4 distractors (train / valid)
- ``lsmdc_fib``     LSMDC16 fill-in-the-blank, tab-separated, no header: clip id, 4 time stamps,
                    the sentence with ``_____`` for the blank, the answer word
- ``lsmdc``         LSMDC16 retrieval, tab-separated, no header: clip id, 4 time stamps, sentence
- ``anet_qa``       ActivityNet-QA: ``<split>_q.json`` [{"question_id", "video_name", "question"}]
                    with its sibling ``<split>_a.json`` [{"question_id", "answer", "type"}]
- ``ssv2_template``, ``ssv2_label``  Something-Something v2 ``something-something-v2-*.json``
                    [{"id", "label", "template", "placeholders"}]: the caption is the template
                    with its [something] slots unbracketed, or the filled label
- ``cc3m``, ``coco``, ``img2dataset``  image-caption collections (CC3M / CC12M TSV, COCO
                    captions JSON, img2dataset tar / Parquet): see :mod:`preprocess.images`
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from preprocess.images import read_cc3m, read_coco, read_img2dataset

FORMATS = ("webvid", "msrvtt", "msrvtt_1ka", "clipbert", "singularity", "paragraph",
           "msrvtt_qa", "msvd_qa", "tgif_qa", "msrvtt_mc", "lsmdc_mc", "lsmdc_fib", "lsmdc", "anet_qa",
           "ssv2_template", "ssv2_label", "table", "msvd", "cc3m", "coco", "img2dataset")

_SURROGATES = re.compile("[\ud800-\udfff]")
# Terminal escape sequences whole ("\x1b[31m"), then any other C0 / C1 control character
_CONTROL = re.compile("\x1b\\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class AnnotationError(ValueError):
    """The annotation file as a whole cannot be read (wrong format, not JSON, no header)."""


# --------------------------------------------------------------------------- reading text


def read_text(path: Path) -> str:
    """The file as text; bytes that are not UTF-8 survive as surrogates (flagged per row)."""
    return path.read_bytes().decode("utf-8", errors="surrogateescape").lstrip("\ufeff")


def clean_text(value: Any) -> tuple[str | None, str | None]:
    """(text, error): the error says why a caption / question cannot be used."""
    if value is None:
        return None, "empty caption (missing)"
    if isinstance(value, float) and not math.isfinite(value):  # JSON's NaN / Infinity: no caption
        return None, "empty caption (missing)"
    if not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        else:
            return json.dumps(value)[:200], f"caption is not text ({type(value).__name__})"
    if _SURROGATES.search(value):
        shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return shown, "caption is not valid UTF-8 text (undecodable bytes)"
    text = " ".join(_CONTROL.sub(" ", value).split())  # NUL, escape codes ...: not text a tokenizer should see
    if not text:
        return "", "empty caption"
    return text, None


class _Lines:
    """A file's physical lines for ``csv.reader``, numbered, with the lines of the record being
    read kept in ``record`` -- so a record knows the file line it starts on, and the lines an
    unterminated quote swallowed can be put back (``pending``) and read as rows of their own."""

    def __init__(self, f):
        self.f, self.n, self.pending, self.record = f, 0, deque(), []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.pending:
            item = self.pending.popleft()
        else:
            raw = self.f.readline()
            if not raw:
                raise StopIteration
            self.n += 1
            text = raw.decode("utf-8", errors="surrogateescape")
            item = (self.n, text.lstrip("\ufeff") if self.n == 1 else text)
        self.record.append(item)
        return item[1]


def _is_whole_record(text: str, columns: int, delimiter: str) -> bool:
    """Does this text (a line, or a record's lines joined) parse strictly as one complete record
    of ``columns`` fields?"""
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error:
        return False
    return len(records) == 1 and len(records[0]) == columns


def _csv_records(path: Path, needed: set[str], what: str,
                 delimiter: str = ",") -> Iterator[tuple[str, dict | None, str | None]]:
    """(origin, record, error) for every record of a CSV / TSV file; a bad row never raises.

    Origins name the file line a record starts on (a quoted caption may span lines). A row
    whose field count is not the header's, a quoting error, and a quote that never closes
    (found because the following lines, each a whole record, were swallowed into one field)
    are errors of that row; the swallowed lines are read again as rows of their own.
    """
    csv.field_size_limit(sys.maxsize)  # a 1 MB caption is a "caption too long" row, not a crash
    with path.open("rb") as f:
        lines = _Lines(f)
        reader = csv.reader(lines, delimiter=delimiter)
        try:
            header = [c.strip() for c in next(reader, [])]
        except csv.Error as err:
            raise AnnotationError(f"{path}: cannot read the header line ({err})") from None
        if not needed <= set(header):
            raise AnnotationError(f"{path}: {what} needs columns {', '.join(sorted(needed))}, has {sorted(header)}")
        while True:
            lines.record = []
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                yield f"{path.name}:line {lines.record[0][0] if lines.record else lines.n}", None, \
                    f"CSV quoting error ({err})"
                continue
            first = lines.record[0][0]
            origin = f"{path.name}:line {first}"
            if not fields:  # a blank line
                continue
            # A record over several lines is a quoted field with line breaks (valid CSV) when its
            # lines parse strictly as that one record; otherwise a quote never closed, and the
            # lines it swallowed that are whole records on their own are read again.
            # A line in the middle of such a record that is a whole record on its own means a quote
            # was left open and a stray quote further down closed it: rows were swallowed.
            middle = lines.record[1:-1]
            suspect = len(fields) != len(header) or any(
                _is_whole_record(t, len(header), delimiter) for _, t in middle) or (
                len(lines.record) > 1 and not _is_whole_record("".join(t for _, t in lines.record),
                                                               len(header), delimiter))
            swallowed = None if not suspect else next(
                (i for i, (_, text) in enumerate(lines.record[1:], 1) if _is_whole_record(text, len(header), delimiter)),
                None)
            if swallowed is not None:
                yield origin, None, (f"unterminated quote: a quoted field opened on line {first} never closes "
                                     f"and swallowed line {lines.record[swallowed][0]}; that line is read "
                                     "again on its own")
                lines.pending.extendleft(reversed(lines.record[swallowed:]))
                continue
            if len(fields) != len(header):
                yield origin, None, (f"row has {len(fields)} fields, the header names {len(header)} "
                                     f"(an unquoted {delimiter!r} in a caption, or a missing field?)")
                continue
            yield origin, dict(zip(header, fields)), None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}: not valid JSON ({err})") from None


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, record, error) for every non-blank line."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.decode("utf-8", errors="surrogateescape").strip().lstrip("\ufeff")
            if not line:
                continue
            try:
                yield lineno, json.loads(line), None
            except json.JSONDecodeError as err:
                yield lineno, None, f"line is not valid JSON ({err.msg})"


def _records(path: Path) -> Iterator[tuple[str, Any, str | None]]:
    """(origin, record, error) from a JSON list, a JSONL file, or a dict of records."""
    if path.suffix == ".jsonl":
        for lineno, rec, err in _iter_jsonl(path):
            yield f"{path.name}:line {lineno}", rec, err
        return
    data = _load_json(path)
    if isinstance(data, dict):
        for name in ("annotations", "data", "questions"):
            if isinstance(data.get(name), list):
                data = data[name]
                break
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a JSON list of records")
    for i, rec in enumerate(data):
        yield f"{path.name}:[{i}]", rec, None


def _row(origin: str, video_id: Any, *, caption: Any = None, qa: dict | None = None,
         split: str | None = None, want_path: str | None = None, error: str | None = None) -> dict:
    vid = None if video_id is None else str(video_id).strip()
    row = {"origin": origin, "video_id": vid or None, "want_path": want_path, "caption": None,
           "qa": None, "split": split, "row_error": error}
    if error is None and not vid:
        row["row_error"] = "record names no video"
    if qa is not None:
        if qa.get("question") == "" and qa.get("options"):
            question, qerr = "", None  # caption multiple choice (MSRVTT-MC, LSMDC-MC): no question, only options
        else:
            question, qerr = clean_text(qa.get("question"))
        qa = dict(qa, question=question)
        row["qa"] = qa
        if row["row_error"] is None and qerr:
            row["row_error"] = qerr.replace("caption", "question")
        if caption is not None:  # the right option of a caption MC is a caption of the video
            row["caption"], cerr = clean_text(caption)
            row["row_error"] = row["row_error"] or cerr
    elif error is None:
        text, cerr = clean_text(caption)
        row["caption"] = text
        if row["row_error"] is None:
            row["row_error"] = cerr
    return row


def _bad_record(origin: str, rec: Any, error: str | None, needed: str) -> dict | None:
    if error:
        return _row(origin, None, error=error)
    if not isinstance(rec, dict):
        return _row(origin, None, error=f"record is not an object ({needed})")
    return None


# --------------------------------------------------------------------------- adapters


def in_split(own, wanted: str | None) -> bool:
    """Is a record whose file states its own split ``own`` (or none) kept under ``--split wanted``?
    A stated split that differs is left out, as MSR_VTT.json's videos of other splits are."""
    return not wanted or not isinstance(own, str) or not own.strip() or own.strip() == wanted


def read_webvid(path: Path, split: str | None = None) -> Iterator[dict]:
    for origin, rec, err in _csv_records(path, {"videoid", "name"}, "WebVid CSV"):
        if err:
            yield _row(origin, None, error=err)
            continue
        if not in_split(rec.get("split"), split):
            continue
        vid = (rec.get("videoid") or "").strip()
        page = (rec.get("page_dir") or "").strip()
        want = f"{page}/{vid}.mp4" if page and vid else None
        yield _row(origin, vid, caption=rec.get("name"), want_path=want, split=rec.get("split") or split)


def read_msrvtt(path: Path, split: str | None = None) -> Iterator[dict]:
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise AnnotationError(f"{path}: MSR_VTT.json needs an 'annotations' list")
    splits = {str(v.get("video_id")): v.get("split") for v in data.get("videos", []) if isinstance(v, dict)}
    for i, rec in enumerate(data["annotations"]):
        origin = f"{path.name}:annotations[{i}]"
        bad = _bad_record(origin, rec, None, "image_id, caption")
        if bad:
            yield bad
            continue
        vid = rec.get("image_id", rec.get("video_id"))
        row_split = splits.get(str(vid))
        if split and row_split != split:
            continue
        yield _row(origin, vid, caption=rec.get("caption"), split=row_split)


def read_msrvtt_1ka(path: Path, split: str | None = None) -> Iterator[dict]:
    for origin, rec, err in _csv_records(path, {"video_id", "sentence"}, "1k-A list"):
        if err:
            yield _row(origin, None, error=err)
            continue
        yield _row(origin, rec.get("video_id"), caption=rec.get("sentence"), split=split or "test")


def read_clipbert(path: Path, split: str | None = None) -> Iterator[dict]:
    for origin, rec, err in _records(path):
        bad = _bad_record(origin, rec, err, "caption, clip_name")
        if bad:
            yield bad
            continue
        yield _row(origin, rec.get("clip_name"), caption=rec.get("caption"), split=split)


def _video_field(rec: dict) -> tuple[str | None, str | None]:
    """(video id = the path's stem, the path as written) of a Singularity-style record."""
    path = rec.get("video", rec.get("image"))
    if path is None:
        return None, None
    path = str(path)
    return Path(path).stem, path


def read_singularity(path: Path, split: str | None = None, paragraph: bool = False) -> Iterator[dict]:
    for origin, rec, err in _records(path):
        bad = _bad_record(origin, rec, err, "video, caption")
        if bad:
            yield bad
            continue
        vid, want = _video_field(rec)
        caption = rec.get("caption")
        if isinstance(caption, list):
            if paragraph:
                caption = _join_paragraph(caption)
            else:
                for j, c in enumerate(caption):
                    yield _row(f"{origin}.caption[{j}]", vid, caption=c, want_path=want, split=split)
                continue
        yield _row(origin, vid, caption=caption, want_path=want, split=split)


def _join_paragraph(sentences: list) -> Any:
    parts = []
    for s in sentences:
        if not isinstance(s, str):
            return sentences  # clean_text reports the non-text part
        if s.strip():
            parts.append(s.strip())
    return " ".join(parts)


def read_paragraph(path: Path, split: str | None = None) -> Iterator[dict]:
    """All captions of one video joined into one paragraph (DiDeMo, ActivityNet Captions)."""
    if path.suffix != ".jsonl":
        data = _load_json(path)
        if isinstance(data, dict) and data and all(isinstance(v, dict) and "sentences" in v for v in data.values()):
            for vid, rec in data.items():  # ActivityNet Captions {"v_xx": {"sentences": [...]}}
                yield _row(f"{path.name}:{vid}", vid, caption=_join_paragraph(rec["sentences"]), split=split)
            return
        if isinstance(data, list) and data and isinstance(data[0], dict) and "description" in data[0]:
            yield from _read_didemo(path, data, split)
            return
    yield from read_singularity(path, split, paragraph=True)


def _read_didemo(path: Path, data: list, split: str | None) -> Iterator[dict]:
    """DiDeMo lists one moment per record; the paragraph is a video's descriptions in order."""
    order: dict[str, list[int]] = {}
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            yield _row(f"{path.name}:[{i}]", None, error="record is not an object (video, description)")
            continue
        order.setdefault(str(rec.get("video")), []).append(i)
    for vid, idx in order.items():
        want = vid
        parts = [data[i].get("description") for i in idx]
        origin = f"{path.name}:[{','.join(map(str, idx))}]"
        yield _row(origin, Path(vid).stem if vid != "None" else None,
                   caption=_join_paragraph(parts), want_path=want, split=split)


def _qa_id(video_id: Any, prefix: str) -> Any:
    # MSRVTT-QA numbers videos (7010 -> video7010.mp4); MSVD-QA's files are vid<n>.avi.
    if isinstance(video_id, int) and not isinstance(video_id, bool):
        return f"{prefix}{video_id}"
    return video_id


def read_msrvtt_qa(path: Path, split: str | None = None, prefix: str = "video") -> Iterator[dict]:
    for origin, rec, err in _records(path):
        bad = _bad_record(origin, rec, err, "question, answer, video_id")
        if bad:
            yield bad
            continue
        if not in_split(rec.get("split"), split):
            continue
        answer = rec.get("answer")
        qa = {"question": rec.get("question"), "answer": None if answer is None else str(answer),
              "answer_type": rec.get("answer_type"), "options": None, "answer_idx": None,
              "id": rec.get("id", rec.get("question_id"))}
        err = None if answer is not None and str(answer).strip() else "empty answer"
        row = _row(origin, _qa_id(rec.get("video_id"), prefix), qa=qa, split=rec.get("split") or split)
        row["row_error"] = row["row_error"] or err
        yield row


def read_msvd_qa(path: Path, split: str | None = None) -> Iterator[dict]:
    return read_msrvtt_qa(path, split, prefix="vid")


def _tgif_records(path: Path) -> Iterator[tuple[str, Any, str | None]]:
    if path.suffix in (".csv", ".tsv"):  # the original TGIF-QA release is tab-separated
        for origin, rec, err in _csv_records(path, {"gif_name", "question"}, "TGIF-QA file", delimiter="\t"):
            opts = [rec[f"a{k}"] for k in range(1, 6) if f"a{k}" in rec] if rec else []
            if opts:
                rec = dict(rec, options=opts)
                rec["answer"] = int(rec["answer"]) if str(rec.get("answer", "")).isdigit() else rec.get("answer")
            yield origin, rec, err
        return
    yield from _records(path)


def read_tgif_qa(path: Path, split: str | None = None) -> Iterator[dict]:
    for origin, rec, err in _tgif_records(path):
        bad = _bad_record(origin, rec, err, "gif_name, question, answer")
        if bad:
            yield bad
            continue
        options, answer, idx, error = rec.get("options"), rec.get("answer"), None, None
        if options is not None:  # multiple choice: answer is the index of the right option
            if not isinstance(options, list) or not isinstance(answer, int) or not 0 <= answer < len(options):
                error = f"answer {answer!r} is not an index into the {len(options) if isinstance(options, list) else 0} options"
            else:
                idx, answer = answer, str(options[answer])
                options = [str(o) for o in options]
        qa = {"question": rec.get("question"), "answer": None if answer is None else str(answer),
              "answer_type": rec.get("answer_type") or ("multiple_choice" if options is not None else None),
              "options": options, "answer_idx": idx, "id": rec.get("id", rec.get("key"))}
        row = _row(origin, rec.get("gif_name"), qa=qa, split=split)
        row["row_error"] = row["row_error"] or error
        yield row


def _multiple_choice(options: Any, answer: Any, base: int = 0) -> tuple[list[str] | None, int | None, str | None]:
    """(options as text, 0-based answer index, error) of a caption multiple-choice record."""
    if not isinstance(options, list) or len(options) < 2:
        return None, None, f"options must be a list of at least 2 captions, not {json.dumps(options)[:80]}"
    if isinstance(answer, str) and answer.strip().isdigit():
        answer = int(answer)
    if not isinstance(answer, int) or isinstance(answer, bool) or not base <= answer < len(options) + base:
        return None, None, f"answer {answer!r} is not an index into the {len(options)} options (from {base})"
    return [str(o) for o in options], answer - base, None


def _caption_choice(origin: str, vid: Any, options: Any, answer: Any, *, base: int = 0, qid: Any = None,
                    split: str | None = None, want: str | None = None) -> dict:
    opts, idx, error = _multiple_choice(options, answer, base)
    qa = {"question": "", "answer": opts[idx] if opts else None, "answer_type": "caption", "options": opts,
          "answer_idx": idx, "id": qid}
    return _row(origin, vid, qa=qa, caption=opts[idx] if opts else None, split=split, want_path=want, error=error)


def read_msrvtt_mc(path: Path, split: str | None = None) -> Iterator[dict]:
    """MSRVTT-MC: each test video with 5 candidate captions, one right (JSFusion's test; the
    Singularity JSON and the ClipBERT JSONL carry the same items)."""
    for origin, rec, err in _records(path):
        bad = _bad_record(origin, rec, err, "video | clip_name, caption | options, answer")
        if bad:
            yield bad
            continue
        if "clip_name" in rec:
            vid, want, options = rec.get("clip_name"), None, rec.get("options")
        else:
            (vid, want), options = _video_field(rec), rec.get("caption")
        yield _caption_choice(origin, vid, options, rec.get("answer"), qid=rec.get("qid", rec.get("question_id")),
                              split=split, want=want)


LSMDC_CLIP_COLUMNS = 5  # clip id, start/end aligned, start/end extracted ("hh.mm.ss.mmm")


def _lsmdc_lines(path: Path, what: str) -> Iterator[tuple[str, list[str] | None, str | None]]:
    """(origin, fields, error) of each line of an LSMDC16 tab-separated file (no header, no quoting:
    sentences hold quotes as they are)."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            text = raw.decode("utf-8", errors="surrogateescape").rstrip("\r\n").lstrip("\ufeff")
            if not text.strip():
                continue
            fields = text.split("\t")
            origin = f"{path.name}:line {lineno}"
            if len(fields) <= LSMDC_CLIP_COLUMNS:
                yield origin, None, (f"{what} line has {len(fields)} tab-separated fields; needs the clip id, "
                                     f"4 time stamps and the text")
                continue
            yield origin, fields, None


def _lsmdc_want(clip_id: str) -> str:
    """LSMDC clips live in a folder per movie: ``1004_Juno/1004_Juno_00.00.32.849-00.00.35.458.avi``."""
    return f"{clip_id.rsplit('_', 1)[0]}/{clip_id}.avi"


def read_lsmdc(path: Path, split: str | None = None) -> Iterator[dict]:
    """LSMDC16 retrieval annotations (``LSMDC16_annos_training.csv``, the 1000-clip test list)."""
    for origin, fields, err in _lsmdc_lines(path, "LSMDC"):
        if err:
            yield _row(origin, None, error=err)
            continue
        clip = fields[0].strip()
        yield _row(origin, clip, caption="\t".join(fields[LSMDC_CLIP_COLUMNS:]), split=split, want_path=_lsmdc_want(clip))


def read_lsmdc_mc(path: Path, split: str | None = None) -> Iterator[dict]:
    """LSMDC16 multiple choice: the public test lists 5 sentences and the 1-based right one; the
    training and validation files list the right sentence first, then the 4 distractors."""
    for origin, fields, err in _lsmdc_lines(path, "LSMDC-MC"):
        texts = fields[LSMDC_CLIP_COLUMNS:] if fields else []
        if not err and len(texts) not in (5, 6):
            err = (f"LSMDC-MC line has {len(texts)} fields after the clip columns; needs 5 sentences "
                   f"(train/valid) or 5 sentences and the answer index (public test)")
        if err:
            yield _row(origin, None, error=err)
            continue
        clip = fields[0].strip()
        options, answer, base = (texts[:5], texts[5].strip(), 1) if len(texts) == 6 else (texts, 0, 0)
        yield _caption_choice(origin, clip, options, answer, base=base, qid=f"{path.name}:{origin.rsplit(' ', 1)[1]}",
                              split=split, want=_lsmdc_want(clip))


FIB_BLANK = "_____"


def read_lsmdc_fib(path: Path, split: str | None = None) -> Iterator[dict]:
    """LSMDC16 fill-in-the-blank: a sentence with one ``_____`` and the word that fills it."""
    for origin, fields, err in _lsmdc_lines(path, "LSMDC-FiB"):
        if not err and len(fields) != LSMDC_CLIP_COLUMNS + 2:
            err = f"LSMDC-FiB line has {len(fields)} fields; needs clip id, 4 time stamps, sentence, answer"
        if err:
            yield _row(origin, None, error=err)
            continue
        clip, sentence, answer = fields[0].strip(), fields[5], fields[6].strip()
        error = (None if sentence.count(FIB_BLANK) == 1 else
                 f"sentence has {sentence.count(FIB_BLANK)} blanks ({FIB_BLANK}); needs exactly one")
        qa = {"question": sentence, "answer": answer or None, "answer_type": "fib", "options": None,
              "answer_idx": None, "id": f"{path.name}:{origin.rsplit(' ', 1)[1]}"}
        row = _row(origin, clip, qa=qa, split=split, want_path=_lsmdc_want(clip))
        row["row_error"] = row["row_error"] or error or (None if answer else "empty answer")
        yield row


ANET_QA_TYPES = ("motion", "spatial", "temporal", "yes_no", "color", "object", "location", "number", "other")


def read_anet_qa(path: Path, split: str | None = None) -> Iterator[dict]:
    """ActivityNet-QA: questions in ``<split>_q.json``, answers in the ``<split>_a.json`` beside it,
    joined by question_id. Videos are ActivityNet's ``v_<video_name>.mp4``."""
    if not path.name.endswith("_q.json"):
        raise AnnotationError(f"{path}: ActivityNet-QA annotations are the <split>_q.json file (its answers "
                              "are read from <split>_a.json beside it)")
    answers_path = path.with_name(path.name[: -len("_q.json")] + "_a.json")
    if not answers_path.is_file():
        raise AnnotationError(f"{path}: the answers file {answers_path} is missing")
    answers = {}
    for _, rec, _err in _records(answers_path):
        if isinstance(rec, dict) and "question_id" in rec:
            answers[str(rec["question_id"])] = rec
    for origin, rec, err in _records(path):
        bad = _bad_record(origin, rec, err, "question_id, video_name, question")
        if bad:
            yield bad
            continue
        ans = answers.get(str(rec.get("question_id")))
        kind = ans.get("type") if ans else None
        qa = {"question": rec.get("question"), "answer": None if not ans or ans.get("answer") is None else str(ans["answer"]),
              "answer_type": ANET_QA_TYPES[kind] if isinstance(kind, int) and 0 <= kind < len(ANET_QA_TYPES) else kind,
              "options": None, "answer_idx": None, "id": rec.get("question_id")}
        name = rec.get("video_name")
        vid = None if name is None else (str(name) if str(name).startswith("v_") else f"v_{name}")
        row = _row(origin, vid, qa=qa, split=split)
        if row["row_error"] is None and not ans:
            row["row_error"] = f"no answer for question_id {rec.get('question_id')!r} in {answers_path.name}"
        elif row["row_error"] is None and not (qa["answer"] or "").strip():
            row["row_error"] = "empty answer"
        yield row


def ssv2_template_text(template: str) -> str:
    """``Putting [something] onto [something]`` -> ``Putting something onto something``."""
    return re.sub(r"\[([^\]]*)\]", r"\1", template)


def _read_ssv2(path: Path, split: str | None, field_name: str) -> Iterator[dict]:
    for origin, rec, err in _records(path):
        bad = _bad_record(origin, rec, err, "id, label, template, placeholders")
        if bad:
            yield bad
            continue
        text = rec.get(field_name)
        if field_name == "template" and isinstance(text, str):
            text = ssv2_template_text(text)
        yield _row(origin, rec.get("id"), caption=text, split=split, want_path=f"{rec.get('id')}.webm")


def read_ssv2_template(path: Path, split: str | None = None) -> Iterator[dict]:
    return _read_ssv2(path, split, "template")


def read_ssv2_label(path: Path, split: str | None = None) -> Iterator[dict]:
    return _read_ssv2(path, split, "label")


# ----------------------------------------------------------------------------- any table of captions

# Column names a video-caption table uses, most specific first (compared case-insensitively,
# with "-" and " " read as "_"). A collection made by hand, a scrape (HD-VILA, Panda-70M,
# InternVid) or VATEX (``videoID``, ``enCap``) names its two columns with one of these.
VIDEO_COLUMNS = ("video", "video_id", "videoid", "video_path", "video_name", "video_file", "vid",
                 "clip", "clip_id", "clip_name", "clip_path", "file", "filename", "file_name", "path",
                 "filepath", "youtube_id", "ytid", "media", "id")
CAPTION_COLUMNS = ("caption", "captions", "encap", "en_caption", "en_captions", "text", "sentence",
                   "sentences", "description", "descriptions", "desc", "title", "annotation", "utterance")
SPLIT_COLUMNS = ("split", "subset")


def _column_key(name: str) -> str:
    return re.sub(r"[\s-]+", "_", str(name).strip()).lower()


def table_columns(names) -> tuple[str | None, str | None]:
    """(video column, caption column) of a table with these column names, as the file spells
    them; None where no name matches."""
    by_key: dict[str, str] = {}
    for name in names:
        by_key.setdefault(_column_key(name), name)
    video = next((by_key[k] for k in VIDEO_COLUMNS if k in by_key), None)
    caption = next((by_key[k] for k in CAPTION_COLUMNS if k in by_key), None)
    return video, caption


def _table_video(value: Any) -> tuple[Any, str | None]:
    """(video id, path as written): a value with a folder or a video / image extension names a
    file (``videos/a1.mp4`` -> id ``a1``); anything else is an id matched against file stems."""
    from preprocess.images import is_image_path
    from preprocess.sources import VIDEO_SUFFIXES
    if isinstance(value, str):
        text = value.strip()
        if "/" in text or "\\" in text or Path(text).suffix.lower() in VIDEO_SUFFIXES or is_image_path(text):
            return Path(text.replace("\\", "/")).stem, text
    return value, None


def _sniff_delimiter(path: Path) -> str:
    """A TSV's header has tabs; a CSV's commas (whichever the header has more of)."""
    with path.open("rb") as f:
        header = f.readline().decode("utf-8", errors="surrogateescape")
    return "\t" if path.suffix == ".tsv" or header.count("\t") > header.count(",") else ","


def _table_records(path: Path) -> Iterator[tuple[str, Any, str | None]]:
    """(origin, record, error) of a table in any of CSV, TSV, JSON or JSONL. A JSON object
    mapping each video to its caption (or captions) reads as records too."""
    if path.suffix in (".csv", ".tsv", ".txt"):
        yield from _csv_records(path, set(), "table", delimiter=_sniff_delimiter(path))
        return
    if path.suffix != ".jsonl":
        data = _load_json(path)
        if isinstance(data, dict) and data and all(_is_caption_value(v) for v in data.values()):
            for vid, caps in data.items():
                yield f"{path.name}:{vid}", {"video": vid, "caption": caps}, None
            return
    yield from _records(path)


def _is_caption_value(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and bool(value)
                                      and all(isinstance(c, str) for c in value))


def read_table(path: Path, split: str | None = None) -> Iterator[dict]:
    """Any table with a video column and a caption column (``VIDEO_COLUMNS``,
    ``CAPTION_COLUMNS``): CSV / TSV with a header, a JSON list, JSONL, or a JSON object
    ``{video: caption or [captions]}``. A list of captions is a row per caption; a ``split``
    or ``subset`` column filters rows under ``--split``."""
    columns: tuple[str | None, str | None] | None = None
    for origin, rec, err in _table_records(path):
        bad = _bad_record(origin, rec, err, "a video column and a caption column")
        if bad:
            yield bad
            continue
        if columns is None:  # every record of one file names its columns alike
            columns = table_columns(rec.keys())
            missing = [what for what, col in zip(("video", "caption"), columns) if col is None]
            if missing:
                raise AnnotationError(
                    f"{path}: no {' and no '.join(missing)} column among {sorted(map(str, rec.keys()))}; "
                    f"a video column is one of {', '.join(VIDEO_COLUMNS)}, a caption column one of "
                    f"{', '.join(CAPTION_COLUMNS)} (any case)")
        video_col, caption_col = columns
        own_split = next((rec[k] for k in rec if _column_key(k) in SPLIT_COLUMNS), None)
        if not in_split(own_split, split):
            continue
        row_split = own_split.strip() if isinstance(own_split, str) and own_split.strip() else split
        vid, want = _table_video(rec.get(video_col))
        caption = rec.get(caption_col)
        if isinstance(caption, list):
            for j, c in enumerate(caption):
                yield _row(f"{origin}.{caption_col}[{j}]", vid, caption=c, want_path=want, split=row_split)
            continue
        yield _row(origin, vid, caption=caption, want_path=want, split=row_split)


def read_msvd(path: Path, split: str | None = None) -> Iterator[dict]:
    """Lines ``<video id> <caption>`` (MSVD / YouTube2Text's ``AllVideoDescriptions.txt``);
    lines starting with ``#`` are comments."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.decode("utf-8", errors="surrogateescape").strip().lstrip("\ufeff")
            if not line or line.startswith("#"):
                continue
            origin = f"{path.name}:line {lineno}"
            parts = line.split(None, 1)
            if len(parts) < 2:
                yield _row(origin, parts[0], caption=None, split=split)
                continue
            yield _row(origin, parts[0], caption=parts[1], split=split)


READERS = {
    "webvid": read_webvid, "msrvtt": read_msrvtt, "msrvtt_1ka": read_msrvtt_1ka,
    "clipbert": read_clipbert, "singularity": read_singularity, "paragraph": read_paragraph,
    "msrvtt_qa": read_msrvtt_qa, "msvd_qa": read_msvd_qa, "tgif_qa": read_tgif_qa,
    "msrvtt_mc": read_msrvtt_mc, "lsmdc_mc": read_lsmdc_mc, "lsmdc_fib": read_lsmdc_fib, "lsmdc": read_lsmdc,
    "anet_qa": read_anet_qa, "ssv2_template": read_ssv2_template, "ssv2_label": read_ssv2_label,
    "table": read_table, "msvd": read_msvd,
    "cc3m": read_cc3m, "coco": read_coco, "img2dataset": read_img2dataset,
}


# --------------------------------------------------------------------------- detection


def _first_record(path: Path) -> Any:
    if path.suffix == ".jsonl":
        for _, rec, _err in _iter_jsonl(path):
            return rec
        return None
    data = _load_json(path)
    if isinstance(data, list):
        return data[0] if data else None
    return data


def detect_format(path: Path) -> str:
    """The format of an annotation file from its header or its first record."""
    path = Path(path)
    if not path.exists():
        raise AnnotationError(f"{path}: annotation file not found")
    if path.suffix in (".tar", ".parquet"):  # img2dataset writes its downloads as these
        return "img2dataset"
    if path.suffix in (".csv", ".tsv", ".txt"):
        with path.open(newline="", encoding="utf-8", errors="surrogateescape") as f:
            header = f.readline().lstrip("\ufeff")
        cols = {c.strip() for c in re.split("[,\t]", header)}
        if {"videoid", "name"} <= cols:
            return "webvid"
        if {"video_id", "sentence"} <= cols:
            return "msrvtt_1ka"
        if {"gif_name", "question"} <= cols:
            return "tgif_qa"
        if _looks_like_cc3m(header, cols):
            return "cc3m"
        if all(table_columns(cols)):
            return "table"
        if path.suffix == ".txt" and _looks_like_id_caption_lines(path):
            return "msvd"
        raise AnnotationError(f"{path}: cannot tell the format from the header {sorted(cols)}; pass --format "
                              f"(a table needs a video column, one of {', '.join(VIDEO_COLUMNS)}, and a caption "
                              f"column, one of {', '.join(CAPTION_COLUMNS)})")
    rec = _first_record(path)
    if isinstance(rec, dict):
        if "annotations" in rec and "images" in rec and "videos" not in rec:
            return "coco"
        if "annotations" in rec:
            return "msrvtt"
        if rec and all(isinstance(v, dict) and "sentences" in v for v in rec.values()):
            return "paragraph"
        if "gif_name" in rec:
            return "tgif_qa"
        if "clip_name" in rec and "options" in rec or isinstance(rec.get("caption"), list) and "answer" in rec:
            return "msrvtt_mc"
        if "video_name" in rec and "question_id" in rec:
            return "anet_qa"
        if "question" in rec and "video_id" in rec:
            return "msrvtt_qa"
        if "clip_name" in rec:
            return "clipbert"
        if "description" in rec and "video" in rec:
            return "paragraph"
        if ("video" in rec or "image" in rec) and "caption" in rec:
            return "singularity"
        if all(table_columns(rec.keys())):
            return "table"
        if path.suffix != ".jsonl" and rec and all(_is_caption_value(v) for v in rec.values()) \
                and isinstance(_load_json(path), dict):
            return "table"  # {video: caption or [captions]}
    raise AnnotationError(f"{path}: cannot tell the annotation format from its first record; pass --format "
                          f"({', '.join(FORMATS)})")


def _looks_like_id_caption_lines(path: Path, lines: int = 20) -> bool:
    """Do the first lines read ``<id> <caption of several words>`` (``#`` comments aside), as
    MSVD's AllVideoDescriptions.txt does?"""
    seen = 0
    with path.open("rb") as f:
        for raw in f:
            line = raw.decode("utf-8", errors="replace").strip().lstrip("\ufeff")
            if not line or line.startswith("#"):
                continue
            if "\t" in line or len(line.split()) < 3:
                return False
            seen += 1
            if seen >= lines:
                break
    return seen > 0


def _looks_like_cc3m(header: str, cols: set[str]) -> bool:
    """A header ``caption<TAB>url``, or a first row of two tab-separated fields, one a URL or an
    image file (CC3M and CC12M ship without a header)."""
    from preprocess.images import is_image_path, is_url
    fields = [c.strip() for c in header.rstrip("\r\n").split("\t")]
    if {"caption", "url"} <= {c.lower() for c in cols}:
        return True
    return len(fields) == 2 and any(is_url(f) or is_image_path(f) for f in fields)


def read_rows(path: Path, fmt: str | None = None, split: str | None = None) -> tuple[str, Iterator[dict]]:
    """(format, rows) of one annotation file."""
    path = Path(path)
    if not path.exists():
        raise AnnotationError(f"{path}: annotation file not found")
    with path.open("rb") as f:
        head = f.read(4)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # what spreadsheet programs save as "Unicode text"
        raise AnnotationError(f"{path}: UTF-16 text; save it as UTF-8 (every format here is read as UTF-8)")
    fmt = fmt or detect_format(path)
    if fmt not in READERS:
        raise AnnotationError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return fmt, READERS[fmt](path, split)
