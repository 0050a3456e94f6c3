"""Test-time frame ensembles (eval/ensemble.py): splitting, combining, config, and the evaluations
that use them on a tiny random model and tiny real shards."""

import math

import pytest
import torch

from eval.config import EvalConfig
from eval.ensemble import FrameEnsemble, group_batches
from eval.metrics import groups_to_mask, ranks_from_scores
from eval.retrieval import embed_retrieval_set, evaluate_retrieval
from pipeline.config import ConfigError, apply_overrides, section
from tests.support import params_dict


def test_split_interleaves_so_every_group_spans_the_clip():
    video = torch.arange(8.0).view(1, 8, 1, 1, 1).expand(2, 8, 3, 2, 2)
    groups = FrameEnsemble("mean", 2).split(video)
    assert [g[0, :, 0, 0, 0].tolist() for g in groups] == [[0, 2, 4, 6], [1, 3, 5, 7]]
    with pytest.raises(ValueError, match="3 equal groups"):
        FrameEnsemble("max", 3).split(video)


def test_combine_rules():
    a, b, c = torch.randn(3, 5, 4).unbind(0)
    mean, mx = FrameEnsemble("mean", 3).combine([a, b, c]), FrameEnsemble("max", 3).combine([a, b, c])
    assert torch.allclose(mean, (a + b + c) / 3, atol=1e-6)
    assert torch.equal(mx, torch.maximum(torch.maximum(a, b), c))
    assert bool((mx >= mean - 1e-6).all())
    # lse lies between mean and max; it tends to max as tau -> 0 and to mean as tau grows
    lse = FrameEnsemble("lse", 3, 0.1).combine([a, b, c])
    assert bool((lse <= mx + 1e-6).all()) and bool((lse >= mean - 1e-6).all())
    assert torch.allclose(FrameEnsemble("lse", 3, 1e-4).combine([a, b, c]), mx, atol=1e-3)
    assert torch.allclose(FrameEnsemble("lse", 3, 1e4).combine([a, b, c]), mean, atol=1e-3)
    expected = 0.1 * math.log(sum(math.exp(float(x[0, 0]) / 0.1) for x in (a, b, c)) / 3)
    assert float(lse[0, 0]) == pytest.approx(expected, abs=1e-5)
    # equal scores combine to themselves under every rule
    for mode in ("mean", "max", "lse"):
        assert torch.allclose(FrameEnsemble(mode, 2).combine([a, a]), a, atol=1e-6)
    with pytest.raises(ValueError, match="expected 3 group scores"):
        FrameEnsemble("mean", 3).combine([a, b])


def test_plan_needs_a_multiple_of_the_group_size():
    assert FrameEnsemble.plan("mean", 12, 4).groups == 3
    assert FrameEnsemble.plan("concat", 12, 4).groups == 1
    with pytest.raises(ValueError, match="ensemble_frames=10 is not a multiple"):
        FrameEnsemble.plan("lse", 10, 4)
    with pytest.raises(ValueError, match="unknown mode 'median'"):
        FrameEnsemble("median", 2)
    with pytest.raises(ValueError, match="temperature"):
        FrameEnsemble("lse", 2, 0.0)


@pytest.mark.parametrize("overrides, key", [
    (["eval.frames_ensemble=median", "eval.ensemble_frames=8"], "eval.frames_ensemble"),
    (["eval.frames_ensemble=mean"], "eval.ensemble_frames"),
    (["eval.ensemble_frames=8"], "eval.ensemble_frames"),
    (["eval.frames_ensemble=concat", "eval.ensemble_frames=8", "eval.num_frames=4"], "eval.num_frames"),
    (["eval.ensemble_temperature=0"], "eval.ensemble_temperature"),
    (["eval.ensemble_study.modes=[none]"], "eval.ensemble_study.modes"),
    (["eval.ensemble_study.modes=[mean, mean]"], "eval.ensemble_study.modes"),
    (["eval.ensemble_study.tasks=[captioning]"], "eval.ensemble_study.tasks"),
])
def test_config_rejects_bad_ensembles_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        section(apply_overrides(params_dict(), overrides), EvalConfig, "eval")


# --------------------------------------------------------------------------- with a model


@pytest.fixture(scope="module")
def tiny(workspace, shard_root):
    from train.checkpoint import loader_config_of
    from train.data import build_loader
    from train.data.text import load_tokenizer
    from train.model import SMAUG
    from train.checkpoint import read_state, resolve_checkpoint, model_config_of

    folder = resolve_checkpoint(workspace["base"] / "models/pretrain/smaug")
    model = SMAUG.from_pretrained(folder).eval()
    state = read_state(folder)
    loader_cfg = loader_config_of(state, workspace["params"](), num_frames=4, batch_size=4)
    batches = list(build_loader(loader_cfg, str(shard_root / "ret_test"), train=False, text="caption", seed=0))
    return model, batches, load_tokenizer(model_config_of(state).text.path)


def test_retrieval_mean_equals_mean_of_separate_group_scores(tiny):
    model, batches, tok = tiny
    ens = FrameEnsemble("mean", 2)
    sims = [embed_retrieval_set(model, list(group_batches(batches, ens, g)), tok, max_len=16).similarity()
            for g in range(2)]
    by_hand = (sims[0] + sims[1]) / 2
    out = {m: evaluate_retrieval(model, batches, tok, max_len=16, ensemble=FrameEnsemble(m, 2))
           for m in ("mean", "max")}
    for m, expected in (("mean", by_hand), ("max", torch.maximum(*sims))):
        owners = out[m]["per_query"]["video"]
        correct = groups_to_mask(owners, range(out[m]["num_videos"]))
        assert out[m]["per_query"]["vtc"] == ranks_from_scores(expected, correct).tolist()
    # one group of the clip is not the whole clip: the groups really differ
    assert not torch.allclose(sims[0], sims[1])


def _qa_batches(workspace, shard_root, name, text):
    from train.checkpoint import loader_config_of, read_state, resolve_checkpoint
    from train.data import build_loader

    state = read_state(resolve_checkpoint(workspace["base"] / "models/pretrain/smaug"))
    cfg = loader_config_of(state, workspace["params"](), num_frames=4, batch_size=3)
    return list(build_loader(cfg, str(shard_root / name), train=False, text=text, seed=0))


def test_qa_and_mc_combine_the_groups_scores(tiny, workspace, shard_root):
    """Open-ended QA combines answer log-probabilities, MC option VTM logits; checked against the
    groups scored one by one."""
    from eval.qa import evaluate_multiple_choice, evaluate_open_ended
    from train.tasks import AnswerVocab, MultipleChoice, OpenEndedQA

    model, _, tok = tiny
    torch.manual_seed(0)
    qa = OpenEndedQA(model, AnswerVocab(["red", "blue", "green", "left", "right", "spins"]), tok, 16).eval()
    batches = _qa_batches(workspace, shard_root, "qa_test", "question")
    ens = FrameEnsemble("max", 2)
    expected = []
    with torch.no_grad():
        for b in batches:
            groups = [torch.log_softmax(qa.logits({**b, "video": v})[0], -1) for v in ens.split(b["video"])]
            expected += torch.maximum(*groups).argmax(1).tolist()
    answers = [q["answer"] for b in batches for m in b["meta"] for q in m["qa"]]
    want = 100.0 * sum(qa.vocab.answers[p] == a for p, a in zip(expected, answers)) / len(answers)
    assert evaluate_open_ended(qa, batches, ensemble=ens)["accuracy"] == pytest.approx(want)

    mc = MultipleChoice(model, tok, 16).eval()
    batches = _qa_batches(workspace, shard_root, "mc_test", "question")
    ens = FrameEnsemble("mean", 2)
    right = total = 0
    with torch.no_grad():
        for b in batches:
            per_group = [mc.option_scores({**b, "video": v})[0] for v in ens.split(b["video"])]
            for i, q in enumerate(mc.option_scores(b)[1]):
                right += int(((per_group[0][i] + per_group[1][i]) / 2).argmax()) == q["answer_idx"]
                total += 1
    assert evaluate_multiple_choice(mc, batches, ensemble=ens)["accuracy"] == pytest.approx(100.0 * right / total)


def test_a_shared_group_cache_changes_nothing_but_the_work(tiny, monkeypatch):
    import eval.retrieval as retrieval

    model, batches, tok = tiny
    plain = evaluate_retrieval(model, batches, tok, max_len=16, ensemble=FrameEnsemble("max", 2))
    cache: dict = {}
    evaluate_retrieval(model, batches, tok, max_len=16, ensemble=FrameEnsemble("mean", 2), group_cache=cache)
    calls = []
    real = retrieval.embed_retrieval_set
    monkeypatch.setattr(retrieval, "embed_retrieval_set", lambda *a, **k: calls.append(1) or real(*a, **k))
    cached = evaluate_retrieval(model, batches, tok, max_len=16, ensemble=FrameEnsemble("max", 2), group_cache=cache)
    assert calls == [] and cached["per_query"] == plain["per_query"]
