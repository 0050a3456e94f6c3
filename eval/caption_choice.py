"""Caption multiple choice, zero-shot (the MSRVTT-MC / LSMDC-MC protocol): each test video with
its candidate captions, one right; the retrieval model ranks the candidates.

Singularity and VindLU score MSRVTT-MC with the retrieval model's video-text matching head. Here
the headline ``accuracy`` is the candidates' VTC cosine with the video, and VTM's accuracy is
reported beside it (``accuracy_vtm``, absent for a model without a VTM head, MAC's recipe): the
headline follows retrieval's (VTC ranking, VTM beside; issue 15), because VTM's loss stays at its
1:2 prior in every pre-training run here, so its choice is close to a coin (19.0 by VTM against
29.0 by VTC for the 96 px smaug, chance 20). The caption alone is scored, with no question (unlike
TGIF's question+option multiple choice in eval/qa.py).
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from eval.ensemble import FrameEnsemble
from eval.metrics import choice_accuracy
from eval.retrieval import encode_texts, has_vtm
from eval.shuffle import shuffle_frames
from eval.video_memo import VideoMemo
from train.tasks import choice_questions


def _padded(scores: list[torch.Tensor]) -> torch.Tensor:
    out = torch.full((len(scores), max(len(s) for s in scores)), float("-inf"))
    for i, s in enumerate(scores):
        out[i, :len(s)] = s
    return out


@torch.no_grad()
def evaluate_caption_choice(model, tokenizer, batches, *, max_len: int, shuffle_seed: int | None = None,
                            ensemble: FrameEnsemble | None = None, sparsify: bool = True,
                            video_memo: VideoMemo | None = None) -> dict:
    """Accuracy of the highest-scoring candidate caption, by VTM and by VTC (with a frame
    ``ensemble`` each candidate's scores over the frame groups are combined). ``video_memo``
    keeps the encoded clips for another test of the same model on the same clips."""
    video_memo = VideoMemo() if video_memo is None else video_memo  # an empty memo is falsy
    model.eval()
    ensemble = ensemble or FrameEnsemble()
    device = next(model.parameters()).device
    vtm = has_vtm(model)
    batches = list(batches)
    # the candidates repeat (a caption is a distractor of several clips): each distinct text is
    # encoded once, which is most of the cost
    distinct = sorted({str(o).strip() for b in batches for m in b["meta"] for q in choice_questions(m)
                       for o in q["options"]})
    if not distinct:
        raise ValueError("the caption multiple-choice test set has no question with options")
    hidden_all, mask_all, tfeat_all = encode_texts(model, tokenizer, distinct, max_len)
    row = {t: i for i, t in enumerate(distinct)}
    by_vtc, by_vtm, answers = [], [], []
    for batch in tqdm(batches, desc="caption multiple choice", leave=False):
        owners, index, sizes = [], [], []
        for i, meta in enumerate(batch["meta"]):
            for q in choice_questions(meta):
                owners += [i] * len(q["options"])
                index += [row[str(o).strip()] for o in q["options"]]
                sizes.append(len(q["options"]))
                answers.append(int(q["answer_idx"]))
        if not sizes:
            continue
        hidden, mask, tfeat = (x[index].to(device) for x in (hidden_all, mask_all, tfeat_all))
        who = torch.as_tensor(owners, device=device)
        video = batch["video"].to(device)
        if shuffle_seed is not None:
            video = shuffle_frames(video, batch["key"], shuffle_seed)
        vtc_groups, vtm_groups = [], []
        for clip in ensemble.split(video):
            tokens, vfeat = video_memo.encode(model, clip, sparsify=sparsify)
            vtc_groups.append((tfeat * vfeat[who]).sum(-1).float().cpu())
            if vtm:
                vtm_groups.append(model.vtm_score(model.fuse(hidden, mask, tokens[who])).float().cpu())
        by_vtc += list(torch.split(ensemble.combine(vtc_groups), sizes))
        if vtm:
            by_vtm += list(torch.split(ensemble.combine(vtm_groups), sizes))
    vtc_acc = choice_accuracy(_padded(by_vtc), answers)
    result = {"accuracy_vtc": vtc_acc["accuracy"], "num_questions": vtc_acc["num_questions"],
              "chance": 100.0 * sum(1.0 / len(s) for s in by_vtc) / len(by_vtc), "scored_by": "vtc"}
    if vtm:
        result["accuracy_vtm"] = choice_accuracy(_padded(by_vtm), answers)["accuracy"]
    result["accuracy"] = result[f"accuracy_{result['scored_by']}"]
    return result
