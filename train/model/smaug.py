"""SMAUG: sparse masked autoencoder for efficient video-language pre-training.

One training step (``model(batch)``):

1. the clip is masked (``masking.video_ratio``) and encoded with token sparsification: only
   the visible, then only the important tokens are computed;
2. the caption is encoded by the BERT tower (padding columns trimmed);
3. objectives with a weight > 0, each reading the shared encodings:
   VTC (contrastive on the [CLS] features), VTM (matching with hard negatives drawn from the
   VTC similarities, through the fusion), MLM (masked words predicted from the fused text),
   MVM (decoder reconstructs the masked patches), and temporal order (a share of the clips,
   played in another order, must score below the real clip against its caption).

Text masking, ``masking.text_pass``:

* ``two`` (BERT-style VLP: ALBEF, ALPRO, VIOLET): VTC and VTM read the clean caption; MLM runs a
  second text pass on the masked caption, and a second fusion pass;
* ``shared`` (MAC, SimVTP): the caption is masked once and that one pass feeds VTC, VTM and MLM;
  MLM's fusion input, (masked caption, own clip), is VTM's positive pair, so MLM reads VTM's
  fused positives and costs no text or fusion pass of its own. Masking the text then saves
  compute, as the abstract says; evaluation always reads clean text.

An objective whose weight is 0 is neither built nor computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .fusion import FusionEncoder
from .masking import mask_tokens
from .objectives import (
    TARGETS, VTC, MLMHead, MVMDecoder, VTMHead, masked_positions, mlm_loss, mvm_loss, order_loss, perturb_time,
    sample_negatives, vtm_loss,
)
from .pretrained import InitReport, init_video_encoder
from .text_encoder import TextEncoder
from .video_encoder import VideoEncoder, VideoEncoding


@dataclass
class ModelOutput:
    loss: torch.Tensor                                   # weighted sum of the losses
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> unweighted loss
    # token counts (floats, known from shapes), temperature / mlm_masked_tokens (0-d tensors,
    # so the forward never waits for the device; the trainer converts them when it logs)
    stats: dict[str, float | torch.Tensor] = field(default_factory=dict)


def trim_padding(input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """Drop padding columns beyond the longest text in the batch: [B, L] -> [B, L'].

    The longest length is data: reading it from an accelerator tensor would make the host wait
    for the device, so only host (CPU) tensors are trimmed; on an accelerator the batch is used
    as it comes (padding is masked, so the result is the same, only the cost differs).
    Pre-training trims its batches on the host before they move (``trim_batch``)."""
    if attention_mask.device.type != "cpu":
        return input_ids, attention_mask
    length = int(attention_mask.sum(dim=1).max())
    return input_ids[:, :length], attention_mask[:, :length]


def trim_batch(batch: dict) -> dict:
    """``batch`` with its text padding trimmed (on the host, before the batch moves to a GPU)."""
    if "input_ids" not in batch or "attention_mask" not in batch:
        return batch
    input_ids, attention_mask = trim_padding(batch["input_ids"], batch["attention_mask"])
    return {**batch, "input_ids": input_ids, "attention_mask": attention_mask}


class SMAUG(nn.Module):
    def __init__(self, cfg: ModelConfig, *, video_init: bool = True, text_weights: bool = True) -> None:
        """``video_init=False`` skips ``model.video.init`` and ``text_weights=False`` the text
        tower's pretrained weights: for callers that load a SMAUG checkpoint over the model
        anyway (and need not have the pretrained files)."""
        super().__init__()
        self.cfg = cfg
        w = cfg.objectives
        self.video = VideoEncoder(cfg.video, cfg.sparsify)
        self.video_init_report: InitReport | None = None
        if cfg.video.init is not None and video_init:
            self.video_init_report = init_video_encoder(self.video, cfg.video)
        self.text = TextEncoder(cfg.text, weights=text_weights)
        dt, dv = self.text.hidden_size, cfg.video.width
        self.video_proj = nn.Linear(dv, cfg.embed_dim)
        self.text_proj = nn.Linear(dt, cfg.embed_dim)
        self.vtc = VTC(cfg.temperature) if w.vtc > 0 else None
        needs_fusion = w.vtm > 0 or w.mlm > 0
        self.fusion = FusionEncoder(cfg.fusion, dt, dv) if needs_fusion else None
        self.vtm_head = VTMHead(dt) if w.vtm > 0 else None
        self.mlm_head = None
        if w.mlm > 0:
            self.mlm_head = MLMHead(dt, self.text.word_embeddings, self.text.bert.config.layer_norm_eps)
            if cfg.text.init == "pretrained" and text_weights:
                self.mlm_head.load_from_checkpoint(self.text.path)
        self.mvm_decoder = MVMDecoder(cfg.mvm, cfg.video) if w.mvm > 0 else None

    @classmethod
    def from_pretrained(cls, folder, map_location: str | torch.device = "cpu") -> "SMAUG":
        """The model of any checkpoint folder the project writes, in eval mode, in one call.

        Pre-training runs (``models/pretrain/<run>``) and fine-tuned tasks
        (``models/finetune/<run>/<task>``; a QA or multiple-choice task gives its underlying
        model, the heads it shares with it trained) alike; ``final`` / ``last`` sub-folders
        are found. Weights come from safetensors only. ``checkpoint_state`` keeps state.json
        (the run's params: image size, normalisation, frames), which ``eval.embed`` reads to
        encode new videos as evaluation does.
        """
        from train.checkpoint import resolve_checkpoint
        from train.tasks import load_task_model

        folder = resolve_checkpoint(folder)
        module, state = load_task_model(folder, map_location=map_location)
        model = getattr(module, "model", module)  # OpenEndedQA / MultipleChoice wrap the model
        model.checkpoint_state = state
        model.checkpoint_dir = folder
        return model

    def lr_scales(self) -> dict[nn.Module, float]:
        """Modules whose parameters learn at a multiple of the run's rate (the optimiser puts
        them in their own param groups): the trainable text layers at ``text.lr_scale``."""
        scale = self.cfg.text.lr_scale
        return {} if scale == 1.0 else {self.text: scale}

    # ------------------------------------------------------------------ public encoders

    def encode_video(
        self, video: torch.Tensor, *, mask: bool = False, sparsify: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """video [B, T, 3, H, W] -> (tokens [B, 1+n, D] CLS first, feat [B, E] L2-normalised).

        ``mask=True`` applies the configured video masking (pre-training); sparsification
        follows the config (it is part of the architecture) unless ``sparsify=False``."""
        enc = self._encode_video(video, mask=mask, sparsify=sparsify, generator=generator)
        return enc.tokens, self.video_feature(enc.tokens)

    def _encode_video(self, video, *, mask, sparsify=True, generator=None, trace=False) -> VideoEncoding:
        m = self.cfg.masking
        return self.video(
            video, mask_ratio=m.video_ratio if mask else 0.0, mask_mode=m.video_mode,
            sparsify=sparsify, generator=generator, trace=trace,
        )

    def set_train_step(self, step: int) -> None:
        """Called by the trainer before every optimiser step: the sparsification warm-up's rates
        (``sparsify.warmup_steps``). Without it, and in eval mode, the final rates apply."""
        self.video.set_step(step)

    def video_feature(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.video_proj(tokens[:, 0]), dim=-1)

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids, attention_mask [B, L] -> (hidden [B, L, Dt], feat [B, E] L2-normalised)."""
        self._check_text(input_ids, attention_mask)
        hidden = self.text(input_ids, attention_mask)
        return hidden, self.text_feature(hidden, attention_mask)

    def text_feature(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """hidden [B, L, Dt] -> the VTC text feature [B, E], L2-normalised.

        ``cls`` is BERT's convention; ``mean`` (padding excluded) is how sentence encoders
        such as all-MiniLM-L6-v2 were trained to be read, so it starts out meaningful.
        """
        if self.cfg.text.pooling == "mean":
            weights = attention_mask.to(hidden.dtype)[..., None]
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        else:
            pooled = hidden[:, 0]
        return F.normalize(self.text_proj(pooled), dim=-1)

    def fuse(
        self, text_hidden: torch.Tensor, attention_mask: torch.Tensor, video_tokens: torch.Tensor
    ) -> torch.Tensor:
        """text_hidden [B, L, Dt], attention_mask [B, L], video_tokens [B, N, D] -> [B, L, Dt]."""
        if self.fusion is None:
            raise RuntimeError(
                "this model has no fusion layers (objectives.vtm and objectives.mlm are 0); "
                "build it with one of them > 0 to fuse"
            )
        return self.fusion(text_hidden, attention_mask, video_tokens)

    def vtm_score(self, fused: torch.Tensor) -> torch.Tensor:
        """fused [B, L, Dt] -> match logit [B] (higher = caption matches clip)."""
        if self.vtm_head is None:
            raise RuntimeError("this model has no VTM head (objectives.vtm is 0)")
        return self.vtm_head(fused)

    # ------------------------------------------------------------------ training step

    def forward(self, batch: dict, generator: torch.Generator | None = None) -> ModelOutput:
        cfg, w = self.cfg, self.cfg.objectives
        video = batch["video"]
        input_ids, attention_mask = trim_padding(batch["input_ids"], batch["attention_mask"])
        self._check_text(input_ids, attention_mask)
        b = video.shape[0]

        enc = self._encode_video(video, mask=cfg.masking.video_ratio > 0, generator=generator)
        v_tokens = enc.tokens
        losses: dict[str, torch.Tensor] = {}
        stats = {
            "video_tokens_input": float(enc.num_patches),
            "video_tokens_visible": float(enc.visible_ids.shape[1]),
            "video_tokens_final": float(v_tokens.shape[1] - 1),
            "text_tokens": float(input_ids.shape[1]),
        }

        shared = cfg.masking.text_pass == "shared"
        if w.mlm > 0 or shared:
            corrupted, labels = self.mask_text(input_ids, attention_mask, generator)
            stats["mlm_masked_tokens"] = (labels != -100).sum()   # 0-d tensor: no device read
        need_text = w.vtc > 0 or w.vtm > 0 or w.order > 0 or (shared and w.mlm > 0)
        if need_text:
            t_hidden = self.text(corrupted if shared else input_ids, attention_mask)
            v_feat = self.video_feature(v_tokens)
            t_feat = self.text_feature(t_hidden, attention_mask)

        if w.vtc > 0:
            losses["vtc"] = self.vtc(v_feat, t_feat)
            stats["temperature"] = self.vtc.temperature.detach()

        if w.order > 0:
            losses["order"], stats["order_acc"] = self._order(video, v_feat, t_feat, generator)

        fused_positives = None
        if w.vtm > 0:
            losses["vtm"], fused_positives = self._vtm(batch, v_tokens, v_feat, t_hidden, t_feat,
                                                       attention_mask, generator)

        if w.mlm > 0:
            if not shared:      # the second text pass and fusion of the two-pass form
                fused = self.fuse(self.text(corrupted, attention_mask), attention_mask, v_tokens)
            elif fused_positives is not None:   # shared: VTM already fused (masked text, clip)
                fused = fused_positives
            else:
                fused = self.fuse(t_hidden, attention_mask, v_tokens)
            losses["mlm"] = mlm_loss(self.mlm_head, fused, labels)

        if w.mvm > 0:
            where = masked_positions(enc.mask, enc.num_patches - enc.visible_ids.shape[1])  # [B, M]
            pred = self.mvm_decoder(enc, where)                               # [B, M, F]
            target_fn = TARGETS[cfg.mvm.target]
            with torch.no_grad():
                target = target_fn(video, cfg.video.patch_size, cfg.video.tubelet,
                                   cfg.mvm.norm_pix, positions=where)
            losses["mvm"] = mvm_loss(pred, target)

        loss = sum(getattr(w, name) * value for name, value in losses.items())
        stats["batch_size"] = float(b)
        return ModelOutput(loss=loss, losses=losses, stats=stats)

    def mask_text(self, input_ids, attention_mask, generator=None):
        """BERT masking of ``masking.text_ratio`` of the real tokens -> (corrupted ids, labels
        with -100 where nothing is predicted), both [B, L]."""
        t = self.text.special
        return mask_tokens(
            input_ids, attention_mask, self.cfg.masking.text_ratio, mask_id=t.mask,
            vocab_size=self.text.vocab_size, special_ids=(t.cls, t.sep, t.pad), generator=generator,
        )

    def _vtm(self, batch, v_tokens, v_feat, t_hidden, t_feat, attention_mask, generator):
        """Positives + (clip, hard negative caption) + (hard negative clip, caption).

        Returns (loss, the fused positive pairs [B, L, Dt]) so a shared text pass's MLM can
        read them."""
        b = v_tokens.shape[0]
        keys = batch.get("key")
        if keys is not None:
            # built on the host from the keys, copied without waiting for the device
            positive = torch.tensor([[a == c for c in keys] for a in keys]).to(
                v_tokens.device, non_blocking=True)
        else:
            positive = torch.eye(b, dtype=torch.bool, device=v_tokens.device)
        with torch.no_grad():
            temperature = self.vtc.temperature if self.vtc is not None else self.cfg.temperature
            sim = v_feat @ t_feat.t() / temperature                        # [B clips, B texts]
            hard = self.cfg.vtm.hard_negatives
            neg_text, ok_t = sample_negatives(sim, positive, hard=hard, generator=generator)
            neg_video, ok_v = sample_negatives(sim.t(), positive.t(), hard=hard, generator=generator)
        text = torch.cat([t_hidden, t_hidden[neg_text], t_hidden], dim=0)
        mask = torch.cat([attention_mask, attention_mask[neg_text], attention_mask], dim=0)
        video = torch.cat([v_tokens, v_tokens, v_tokens[neg_video]], dim=0)
        fused = self.fuse(text, mask, video)
        logits = self.vtm_score(fused)
        labels = torch.cat([logits.new_ones(b), logits.new_zeros(2 * b)])
        weight = torch.cat([torch.ones(b, device=logits.device), ok_t.float(), ok_v.float()])
        return vtm_loss(logits, labels, weight), fused[:b]

    def _order(self, video, v_feat, t_feat, generator):
        """Temporal-order contrast (objectives/order.py) on the first ``order.fraction`` of the
        batch: those clips are encoded again, frames perturbed in time (masked and sparsified
        as in the step), and each caption must prefer its real clip."""
        k = max(1, round(self.cfg.order.fraction * video.shape[0]))
        perturbed = perturb_time(video[:k], self.cfg.order.negative, generator)
        enc = self._encode_video(perturbed, mask=self.cfg.masking.video_ratio > 0, generator=generator)
        temperature = self.vtc.temperature if self.vtc is not None else self.cfg.temperature
        return order_loss(t_feat[:k], v_feat[:k], self.video_feature(enc.tokens), temperature)

    def _check_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        if input_ids.shape != attention_mask.shape or input_ids.ndim != 2:
            raise ValueError(
                f"input_ids {tuple(input_ids.shape)} and attention_mask "
                f"{tuple(attention_mask.shape)} must both be [B, L]"
            )
        if input_ids.shape[1] > self.cfg.text.max_len:
            raise ValueError(
                f"text of {input_ids.shape[1]} tokens exceeds model.text.max_len="
                f"{self.cfg.text.max_len}"
            )
