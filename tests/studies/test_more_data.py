"""The more-data study's extra clips: same generator, another seed, the benchmark's held-out
combinations kept out, and a check that refuses an extra set that would leak them."""

from __future__ import annotations

import json

import pytest

from pipeline.synthetic import SyntheticConfig, generate, plan
from studies.more_data.generate import check_extra, generate_extra

SHORT = dict(workers=2, duration_range=(1.0, 1.0), captions_per_clip=2, formats=["gif", "mp4"], pretrain_clips=0)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("more_data")
    generate(SyntheticConfig(seed=0, num_clips=10, **SHORT), root / "benchmark", progress=False)
    overrides = [f"synthetic.{k}={json.dumps(v)}" for k, v in SHORT.items()]
    summary = generate_extra(1, 12, root / "extra", benchmark_seed=0, overrides=overrides, progress=False)
    return root / "benchmark", root / "extra", summary


def test_extra_clips_hold_out_the_benchmarks_combinations_not_their_own(sets):
    benchmark, extra, summary = sets
    assert plan.held_out_combinations(1, 0.1) != plan.held_out_combinations(0, 0.1)   # the check means something
    meta = json.loads((extra / "meta.json").read_text())
    ours = json.loads((benchmark / "meta.json").read_text())
    assert meta["held_out_combinations"] == ours["held_out_combinations"]
    assert plan.held_out_combinations(1, 0.1) != [tuple(c) for c in meta["held_out_combinations"]]
    assert plan.held_out_combinations.__name__ == "held_out_combinations"   # the generator is left as it was
    assert summary["clips"] == 12 and summary["splits"]["train"] >= 9
    assert {c["stem"] for c in meta["clips"]} and not any(c["held_out"] for c in meta["clips"] if c["split"] == "train")
    report = check_extra(extra, benchmark, 0.1, 0)
    assert report["extra_train_captions"] > 0 and report["test_captions"] > 0


def test_the_benchmarks_own_seed_and_leaking_sets_are_refused(sets, tmp_path):
    benchmark, extra, _ = sets
    with pytest.raises(ValueError, match="the benchmark's own seed"):
        generate_extra(0, 12, tmp_path / "x", benchmark_seed=0)
    assert not (tmp_path / "x").exists()
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    (leaky / "annotations").symlink_to(extra / "annotations")
    meta = json.loads((extra / "meta.json").read_text())
    train = next(c for c in meta["clips"] if c["split"] == "train")
    train["held_out"] = True
    (leaky / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"1 extra train clips show a held-out combination, e.g. {train['stem']}"):
        check_extra(leaky, benchmark, 0.1, 0)
    meta["held_out_combinations"] = meta["held_out_combinations"][:-1]
    (leaky / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="the extra set holds out"):
        check_extra(leaky, benchmark, 0.1, 0)
