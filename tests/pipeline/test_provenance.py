"""Results files carry the hash of the params keys their stage reads; a changed key is named."""

from __future__ import annotations

import pytest
import yaml

from pipeline.config import load_params
from pipeline.provenance import PRETRAIN_KEYS, ProvenanceError, check, stamp
from tests.support import params_dict
from train.pretrain import final_losses


def test_a_changed_key_is_refused_naming_the_file_the_key_and_both_hashes(tmp_path):
    path = tmp_path / "params.yaml"
    params = params_dict()
    path.write_text(yaml.safe_dump(params))
    overrides = ["pretrain.seed=1"]
    data = {"params_provenance": stamp(load_params(path, recipe="dense", overrides=overrides), PRETRAIN_KEYS,
                                       recipe="dense", overrides=overrides)}
    check(data, "pretrain-dense-seed1.json", path)  # same params, recipe and overrides: accepted
    params["model"]["masking"]["video_ratio"] = 0.5  # dense sets this key itself: its run did not change
    params["cost"]["mfu"] = 0.5  # a key pre-training does not read
    path.write_text(yaml.safe_dump(params))
    check(data, "pretrain-dense-seed1.json", path)
    params["pretrain"]["lr"] = 5e-4
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ProvenanceError, match=r"pretrain-dense-seed1\.json: made by other params than .*: "
                                              r"pretrain \(file [0-9a-f]{16}, params [0-9a-f]{16}\)"):
        check(data, "pretrain-dense-seed1.json", path)
    with pytest.raises(ProvenanceError, match="records no params hash"):
        check({"recipe": "smaug"}, "old.json", path)
    # the seed override is part of the record: the same file is another run than seed 2's
    assert stamp(load_params(path, overrides=["pretrain.seed=2"]), PRETRAIN_KEYS)["sha256"] != \
        stamp(load_params(path, overrides=["pretrain.seed=1"]), PRETRAIN_KEYS)["sha256"]


def test_final_losses_average_the_last_tenth_of_the_steps():
    history = [{"loss": 1.0, "loss_vtm": 0.7 - 0.01 * i, "loss_vtc": 2.0} for i in range(40)]
    out = final_losses(history)
    assert out["window_steps"] == 4 and out["vtc"] == 2.0
    assert out["vtm"] == pytest.approx(0.7 - 0.01 * 37.5)
    assert final_losses([]) == {}
