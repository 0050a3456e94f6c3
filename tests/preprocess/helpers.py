"""Helpers for the preprocessing tests: run the CLI, write a params file, mount a tiny disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "preprocess", *args, "--no-progress"]


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cli(*args), cwd=REPO, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"preprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def params_file(folder: Path, **settings) -> Path:
    path = folder / "params.yaml"
    lines = ["preprocess:"] + [f"  {k}: {json.dumps(v)}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_error_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The run failed the way people should see: exit non-zero, one ``error:`` line, no traceback."""
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


class Tmpfs:
    """Small RAM file systems mounted for one test (a real full disk); skips where mount is refused."""

    def __init__(self, root: Path):
        self.root, self.mounted = root, []

    def mount(self, name: str, size: str = "64k", read_only: bool = False) -> Path:
        folder = self.root / name
        folder.mkdir(parents=True)
        opts = f"size={size}" + (",ro" if read_only else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
        self.mounted.append(folder)
        return folder

    def resize(self, folder: Path, size: str = "256m", read_only: bool = False) -> None:
        opts = f"remount,size={size}," + ("ro" if read_only else "rw")
        subprocess.run(["mount", "-o", opts, str(folder)], check=True)

    def unmount_all(self) -> None:
        for folder in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def clip_set(media: dict, stems: list[str], folder: Path, *, bad: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """``(videos folder, clips.jsonl)``: copies of the conftest's good (and ``bad``) clips, one
    annotation row each."""
    videos = folder / "videos"
    videos.mkdir()
    for kind, names in (("good", stems), ("bad", bad)):
        for stem in names:
            (videos / media[kind][stem].name).write_bytes(media[kind][stem].read_bytes())
    ann = folder / "clips.jsonl"
    ann.write_text("".join(json.dumps({"clip_name": s, "caption": f"caption of {s}"}) + "\n"
                           for s in [*stems, *bad]))
    return videos, ann
