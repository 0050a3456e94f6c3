"""Still images as one-frame samples: the image-caption formats, and normalising one image.

Image-caption collections (CC3M / CC12M, COCO Captions, img2dataset downloads) go through the
same manifest -> shard path as videos: their readers yield the input rows of
:mod:`preprocess.formats`, the files are found by path or stem as videos are, and each image
becomes a sample whose ``<key>.jpg`` member takes the place of ``<key>.mp4`` (same
``<key>.json`` metadata, with ``"media": "image"`` and a one-frame ``video`` record, so the
loader plans it like a clip of one frame). Every input row still ends as one stats row.

Formats:

- ``cc3m``        CC3M / CC12M TSV: ``caption<TAB>url-or-file`` (CC3M's order) or
                  ``url<TAB>caption`` (CC12M's), no header; or a table with a header naming
                  ``caption`` and ``url`` (img2dataset's input: CSV, or TSV; other columns are
                  ignored). A
                  row naming a URL fails ("URL without network"): this machine downloads
                  nothing, so fetch the images first (e.g. img2dataset) and list local files.
- ``coco``        COCO captions JSON: ``{"images": [{"id", "file_name"}], "annotations":
                  [{"image_id", "caption"}]}``; an image is found by its ``file_name``.
- ``img2dataset`` img2dataset output: a WebDataset ``.tar`` (``<key>.jpg`` + ``<key>.txt``
                  and/or ``<key>.json`` with ``caption``), or a ``.parquet`` (columns
                  ``caption``, ``url``, ``key``, ``status``, ``error_message``, and ``jpg``
                  image bytes when written with ``output_format=parquet``). The file is its own
                  image container: pass it as ``--videos`` too (the CLI does so when
                  ``--videos`` is omitted).

Normalising: Pillow decodes the image fully (a truncated JPEG fails here, not in training),
applies the EXIF orientation, converts to RGB, checks ``min_side`` / ``max_side``, resizes the
short side to ``short_side`` (even sides, as for videos) and re-encodes it as baseline JPEG.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from preprocess.config import PreprocessConfig
from preprocess.probe import BadVideo, check_source_file

IMAGE_FORMATS = ("cc3m", "coco", "img2dataset")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
JPEG_QUALITY = 90  # the re-encoded JPEG; the loader crops to ~112 px, so 90 loses nothing visible
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def is_image_path(path: str | None) -> bool:
    return isinstance(path, str) and Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_url(text: str | None) -> bool:
    return isinstance(text, str) and bool(_URL.match(text.strip()))


def url_error(url: str) -> str:
    return (f"URL without network: {url.strip()[:120]!r} cannot be downloaded here; download the images "
            "first (e.g. with img2dataset) and list local files")


# --------------------------------------------------------------------------- readers


def _image_row(origin: str, location: str | None, caption, split: str | None, error: str | None = None) -> dict:
    from preprocess.formats import _row  # formats imports this module; import late
    if error is None and location is not None and is_url(location):
        error = url_error(location)
    vid = Path(location).stem if location and not is_url(location) else (location or None)
    want = location if location and not is_url(location) else None
    return _row(origin, vid, caption=caption, want_path=want, split=split, error=error)


def read_cc3m(path: Path, split: str | None = None) -> Iterator[dict]:
    """CC3M / CC12M TSV (two fields, no header), or a table with ``caption`` and ``url`` columns
    (img2dataset's input: a ``.csv``, or a ``.tsv`` whose header names them, other columns ignored)."""
    with path.open("rb") as f:
        head = f.readline().decode("utf-8", errors="surrogateescape").lstrip("\ufeff").rstrip("\r\n")
    if path.suffix == ".csv":
        yield from _read_caption_url_csv(path, split)
        return
    columns = [c.strip().lower() for c in head.split("\t")]
    header = columns if {"caption", "url"} <= set(columns) else None
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and header:
                continue
            line = raw.decode("utf-8", errors="surrogateescape").rstrip("\r\n")
            if not line.strip():
                continue
            origin = f"{path.name}:line {lineno}"
            # Tabs only, no quoting: CC3M captions hold bare quote characters.
            fields = [x.strip() for x in line.split("\t")]
            want = len(header) if header else 2
            if len(fields) != want:
                yield _image_row(origin, None, None, split,
                                 f"row has {len(fields)} tab-separated fields, expected {want} "
                                 f"({', '.join(header) if header else 'caption, url or file'})")
                continue
            if header:
                caption, location = fields[header.index("caption")], fields[header.index("url")]
            else:
                a, b = fields
                # CC3M lists caption first, CC12M url first: the location is the URL or image path.
                first_is_location = (is_url(a) or is_image_path(a)) and not (is_url(b) or is_image_path(b))
                caption, location = (b, a) if first_is_location else (a, b)
            if not location:
                yield _image_row(origin, None, None, split, "record names no image (empty url / file field)")
                continue
            yield _image_row(origin, location, caption, split)


def _read_caption_url_csv(path: Path, split: str | None) -> Iterator[dict]:
    from preprocess.formats import _csv_records
    for origin, rec, err in _csv_records(path, {"caption", "url"}, "caption/url CSV"):
        if err:
            yield _image_row(origin, None, None, split, err)
            continue
        location = (rec.get("url") or "").strip()
        if not location:
            yield _image_row(origin, None, None, split, "record names no image (empty url / file field)")
            continue
        yield _image_row(origin, location, rec.get("caption"), split)


def read_coco(path: Path, split: str | None = None) -> Iterator[dict]:
    from preprocess.formats import AnnotationError, _load_json
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list) \
            or not isinstance(data.get("images"), list):
        raise AnnotationError(f"{path}: COCO captions JSON needs 'images' and 'annotations' lists")
    files = {}
    for im in data["images"]:
        if isinstance(im, dict) and im.get("id") is not None and isinstance(im.get("file_name"), str):
            files[str(im["id"])] = im["file_name"]
    for i, rec in enumerate(data["annotations"]):
        origin = f"{path.name}:annotations[{i}]"
        if not isinstance(rec, dict):
            yield _image_row(origin, None, None, split, "record is not an object (image_id, caption)")
            continue
        image_id = rec.get("image_id")
        if image_id is None:
            yield _image_row(origin, None, None, split, "record names no image (no image_id)")
            continue
        file_name = files.get(str(image_id))
        if file_name is None:
            yield _image_row(origin, None, None, split,
                             f"image_id {image_id!r} is not in images[] (no file_name for it)")
            continue
        yield _image_row(origin, file_name, rec.get("caption"), split)


def read_img2dataset(path: Path, split: str | None = None) -> Iterator[dict]:
    if path.suffix == ".parquet":
        yield from _read_img2dataset_parquet(path, split)
    else:
        yield from _read_img2dataset_tar(path, split)


def _caption_of(members: dict[str, bytes]) -> tuple[object, str | None]:
    """(caption, error) from a sample's ``txt`` member, else its ``json``'s ``caption``."""
    if "txt" in members:
        return members["txt"].decode("utf-8", errors="surrogateescape"), None
    if "json" in members:
        try:
            meta = json.loads(members["json"])
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return None, f"json member is not valid JSON ({err})"
        if isinstance(meta, dict):
            return meta.get("caption"), None
        return None, "json member is not an object"
    return None, None


def _read_img2dataset_tar(path: Path, split: str | None) -> Iterator[dict]:
    from preprocess.formats import AnnotationError
    samples: dict[str, dict[str, bytes]] = {}
    names: dict[str, dict[str, str]] = {}
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                if not m.isfile():
                    continue
                base = m.name.rsplit("/", 1)[-1]
                stem, _, ext = base.partition(".")
                key = m.name[: len(m.name) - len(base)] + stem
                samples.setdefault(key, {})
                names.setdefault(key, {})[ext.lower()] = m.name
                if ext.lower() in ("txt", "json"):
                    samples[key][ext.lower()] = tar.extractfile(m).read()
    except tarfile.TarError as err:
        raise AnnotationError(f"{path}: not a readable tar ({err})") from None
    for key, members in samples.items():
        origin = f"{path.name}:{key}"
        image = next((names[key][e] for e in ("jpg", "jpeg", "png", "webp") if e in names[key]), None)
        caption, error = _caption_of(members)
        if image is None:
            yield _image_row(origin, None, None, split,
                             f"sample {key!r} has no image member (has {sorted(names[key])})")
            continue
        yield _image_row(origin, image, caption, split, error)


def _read_img2dataset_parquet(path: Path, split: str | None) -> Iterator[dict]:
    import pyarrow.parquet as pq
    from preprocess.formats import AnnotationError
    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise AnnotationError(f"{path}: not a readable Parquet file ({err})") from None
    cols = set(pf.schema_arrow.names)
    if "caption" not in cols or not ({"url", "jpg"} & cols):
        raise AnnotationError(f"{path}: img2dataset Parquet needs a 'caption' column and 'url' or 'jpg', "
                              f"has {sorted(cols)}")
    wanted = [c for c in ("key", "caption", "url", "status", "error_message") if c in cols]
    n = 0
    for batch in pf.iter_batches(columns=wanted + (["jpg"] if "jpg" in cols else [])):
        for rec in batch.to_pylist():
            origin = f"{path.name}:row {n}"
            has_bytes = bool(rec.get("jpg"))
            rec.pop("jpg", None)
            if rec.get("status") not in (None, "success"):
                reason = rec.get("error_message") or rec.get("status")
                yield _image_row(origin, None, None, split,
                                 f"img2dataset did not download it ({rec.get('status')}: {reason})")
            elif has_bytes:
                yield _image_row(origin, f"{parquet_key(rec, n)}.jpg", rec.get("caption"), split)
            else:
                url = rec.get("url")
                yield _image_row(origin, url, rec.get("caption"), split,
                                 None if url else "record names no image (no url, no jpg bytes)")
            n += 1


def parquet_key(rec: dict, n: int) -> str:
    """The name a Parquet row's image bytes go by: its img2dataset key, else its row number."""
    key = rec.get("key")
    return str(key) if key not in (None, "") else f"row{n:09d}"


def index_parquet_images(path: Path) -> list[tuple[str, int, int]]:
    """(relpath, size, row) of every row of an img2dataset Parquet that carries image bytes."""
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(path)
    if "jpg" not in pf.schema_arrow.names:
        return []
    cols = ["jpg"] + (["key"] if "key" in pf.schema_arrow.names else [])
    out, n = [], 0
    for batch in pf.iter_batches(columns=cols):
        for rec in batch.to_pylist():
            if rec.get("jpg"):
                out.append((f"{parquet_key(rec, n)}.jpg", len(rec["jpg"]), n))
            n += 1
    return out


def parquet_image_bytes(path: Path, row: int) -> bytes:
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(path)
    first = 0
    for g in range(pf.num_row_groups):
        rows = pf.metadata.row_group(g).num_rows
        if first <= row < first + rows:
            return pf.read_row_group(g, columns=["jpg"]).column("jpg")[row - first].as_py()
        first += rows
    raise BadVideo(f"missing file: row {row} is not in {path.name}")


# --------------------------------------------------------------------------- normalising


def _check_sides(w: int, h: int, cfg: PreprocessConfig) -> None:
    if min(w, h) < cfg.min_side:
        raise BadVideo(f"too small: image is {w}x{h}, a side < min_side {cfg.min_side}")
    if max(w, h) > cfg.max_side:
        raise BadVideo(f"absurd frame size: image is {w}x{h}, a side > max_side {cfg.max_side}")


def normalise_image(src: Path, out_dir: Path, stem: str, cfg: PreprocessConfig) -> tuple[dict, list[dict]]:
    """(probe facts, [one output]) for one image file, or :class:`BadVideo` with the reason."""
    from PIL import Image, ImageOps

    from preprocess.normalise import output_size

    src = Path(src)
    size = check_source_file(src, cfg, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as im:
                codec, mode = (im.format or "unknown").lower(), im.mode
                _check_sides(*im.size, cfg)  # from the header, before decoding an absurd image
                im.load()  # decodes every byte: a truncated file raises here
                im = ImageOps.exif_transpose(im)
                rgb = im.convert("RGB")
    except (Image.UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadVideo(f"not an image file: Pillow cannot identify or refuses it ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:  # Pillow's errors for broken data, not the machine's
        raise BadVideo(f"truncated or corrupt image: {err}") from None
    w, h = rgb.size
    probe = {"codec": codec, "container": "image", "fps": None, "num_frames": 1, "width": w, "height": h,
             "duration": None, "rotation": 0, "bytes": size, "pix_fmt": mode,
             "variable_frame_rate": False, "has_audio": False}
    out_w, out_h = output_size({"width": w, "height": h}, cfg)
    resized = rgb.resize((out_w, out_h), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    resized.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    dst = Path(out_dir) / f"{stem}.jpg"
    dst.write_bytes(buf.getvalue())
    video = {"fps": None, "num_frames": 1, "width": out_w, "height": out_h, "duration": 0.0,
             "codec": "mjpeg", "pix_fmt": "yuvj420p", "keyint": 1}
    normalize = {"short_side": cfg.short_side, "jpeg_quality": JPEG_QUALITY, "rotation_applied": "exif",
                 "window": None}
    return probe, [{"suffix": "", "path": str(dst), "video": video, "normalize": normalize}]
