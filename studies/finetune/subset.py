"""Pre-training shards without the clips of a fine-tuning set.

    python -m studies.finetune.subset --shards data/shards/pretrain \
        --exclude data/shards/ret_train --out data/studies/finetune/shards

The default benchmark pre-trains on its own train split plus ``synthetic.pretrain_clips`` extra
clips, so ``ret_train`` (the retrieval fine-tuning set) is a subset of what pre-training read:
fine-tuning then repeats the pre-training task on seen clips. This writes the pre-training
shards again, sample for sample and byte for byte, leaving out every sample whose key is in the
``--exclude`` shards, so that a run pre-trained on them fine-tunes on clips it has never seen.
Shards keep their order; a sample's members stay together.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

from tqdm import tqdm

SAMPLES_PER_SHARD = 256


def shard_paths(shards: str | Path) -> list[Path]:
    """The loader's own reading of a shard folder, brace pattern or ``::`` list."""
    from train.data.shards import expand_shards

    try:
        return [Path(url) for url in expand_shards(shards)]
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{shards}: no .tar shards ({err})") from None


def sample_key(member_name: str) -> str:
    """WebDataset's key: the name up to the first dot of its last path part."""
    head, _, base = member_name.rpartition("/")
    return (head + "/" if head else "") + base.split(".", 1)[0]


def keys_of(folder: str | Path) -> set[str]:
    keys = set()
    for path in shard_paths(folder):
        with tarfile.open(path) as tar:
            keys |= {sample_key(m.name) for m in tar.getmembers() if m.isfile()}
    return keys


def write_subset(shards: str | Path, exclude: str | Path, out: str | Path) -> dict:
    """Copy ``shards``' samples whose key is not in ``exclude``'s shards into ``out``."""
    excluded = keys_of(exclude)
    sources = shard_paths(shards)  # before anything in ``out`` is removed: bad input loses nothing
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("shard-*.tar"):
        old.unlink()
    kept, dropped, writer, in_shard, written = set(), set(), None, 0, []

    def next_shard():
        nonlocal writer, in_shard
        if writer is not None:
            writer.close()
        path = out / f"shard-{len(written):06d}.tar"
        written.append(path)
        writer, in_shard = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT), 0

    for path in tqdm(sources, desc="subset", unit="shard"):
        with tarfile.open(path) as tar:
            current = None
            for member in tar:
                if not member.isfile():
                    continue
                key = sample_key(member.name)
                if key in excluded:
                    dropped.add(key)
                    continue
                if key != current:  # a new sample: start a new shard when this one is full
                    current = key
                    if writer is None or in_shard == SAMPLES_PER_SHARD:
                        next_shard()
                    in_shard += 1
                    kept.add(key)
                writer.addfile(member, io.BytesIO(tar.extractfile(member).read()))
    if writer is not None:
        writer.close()
    if not kept:
        raise ValueError(f"{shards}: every sample is in {exclude}; nothing left to pre-train on")
    summary = {"shards": str(shards), "exclude": str(exclude), "kept": len(kept), "dropped": len(dropped),
               "excluded_keys": len(excluded), "missing_from_shards": len(excluded - dropped),
               "out": [str(p) for p in written]}
    (out / "subset.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", required=True, help="the pre-training shards' folder")
    ap.add_argument("--exclude", required=True, help="a shard folder whose sample keys are left out")
    ap.add_argument("--out", required=True, help="folder for the new shards (its shard-*.tar are replaced)")
    args = ap.parse_args(argv)
    print(json.dumps(write_subset(args.shards, args.exclude, args.out), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
