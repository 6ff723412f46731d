"""The NVG training objective (the authors' losses without REPA), with optional stage sampling.

Teacher forcing: for every image the tokenizer gives the canvas before each stage, the structure tree,
the code of every cluster and the final latent. Per stage i the content pass is scored by
  x0 MSE      MSE(x0_i, final latent),
  code CE     cross-entropy of the per-cluster code logits against each cluster's code,
and for the stages with a structure network (i < S - 2) the flow pass by
  structure   MSE(eps - v, target) on all D bit dims, where target = the final tree's full bit code
              in +-1, eps ~ N(0, 1) with its first i dims replaced by the (already known) target,
              t = sigmoid(N(0, 1)), z_t = t * eps + (1 - t) * target (flow condition: the canvas after
              stage i's content, i.e. the canvas before stage i + 1; RoPE: the stage-i map).
The official weighting (1 per content stage, S / (S - 2) per structure stage, summed and divided by S)
equals  mean_i (x0 MSE + code CE) + mean_{i < S-2} structure,  which is what is computed here.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .structure import bit_codes
from .transformer import NVGTransformer


def drop_classes(class_labels_B: torch.Tensor, null_class: int, rate: float,
                 generator: torch.Generator | None = None, shard: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """Replace each label by the null class with probability `rate` (for classifier-free guidance); with
    shard=(index, count) the draws are those of shard `index` of a global batch `count` times as large."""
    B, (index, count) = len(class_labels_B), shard
    drop_B = torch.rand(B * count, generator=generator)[B * index:B * (index + 1)].to(class_labels_B.device) < rate
    return torch.where(drop_B, torch.full_like(class_labels_B, null_class), class_labels_B)


def _pick_stages(batch: int, num: int, k: int | None, generator: torch.Generator | None,
                 weights: Sequence[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (sample, stage), sample-major, on the CPU: all `num` stages per sample, or k distinct ones drawn
    uniformly (or in proportion to `weights`, one per stage)."""
    if weights is not None:
        if len(weights) != num or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"stage weights must be {num} non-negative numbers, not all 0; got {list(weights)}")
        k = min(k or num, sum(w > 0 for w in weights))
        weights_BS = torch.tensor(weights, dtype=torch.float).expand(batch, num)
        stage_BK = torch.multinomial(weights_BS, k, replacement=False, generator=generator)
    elif k is None or k >= num:
        stage_BK = torch.arange(num).expand(batch, num)
    else:
        stage_BK = torch.rand(batch, num, generator=generator).argsort(dim=1)[:, :k]
    sample_BK = torch.arange(batch)[:, None].expand_as(stage_BK)
    return sample_BK.flatten(), stage_BK.flatten()


def nvg_loss(model: NVGTransformer, canvases_BSNC: torch.Tensor, final_BNC: torch.Tensor,
             labels_BSN: torch.Tensor, codes_BSN: torch.Tensor, class_labels_B: torch.Tensor,
             generator: torch.Generator | None = None, stages_per_sample: int | None = None,
             cfg_drop: float = 0.1, content: bool = True,
             structure_stage_weights: Sequence[float] | None = None, split_weight: float = 0.0,
             shard: tuple[int, int] = (0, 1)) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss of one batch and its detached parts.

    canvases_BSNC: the canvas before each stage (zeros at stage 0); final_BNC: the final quantised latent;
    labels_BSN: the structure tree; codes_BSN: at every position the code of its stage-s cluster (from
    per-cluster ids: ids_BK.gather(1, labels_BN)); class_labels_B: class ids.
    stages_per_sample=k: score k random content stages and min(k, S - 2) random structure stages per
    image instead of all of them. Each image's stages are drawn uniformly without replacement and the
    loss averages the drawn stages, so it is an unbiased estimate of the full loss (every stage's
    expected weight is unchanged); it costs about k / S of the compute.
    content=False skips the content passes (structure-only fine-tuning); structure_stage_weights draws
    the structure stages in proportion to the given weights instead (a re-weighting of the stages, e.g.
    towards the first splits, not an unbiased estimate); split_weight adds that multiple of the loss on
    the bit each stage decides (dim i at stage i, the only one its split uses).
    Every random number (class dropout, stages, noise, flow times) comes from `generator` (CPU).
    shard=(index, count): the batch is shard `index` of `count` equal shards of one global batch (one per
    process in distributed training); the random numbers are drawn for the global batch and this shard's
    kept, so that any number of processes draws what one process would.
    """
    cfg = model.spec
    B, S, N, _ = canvases_BSNC.shape
    device = canvases_BSNC.device
    if S != cfg.num_stages or N != cfg.num_positions:
        raise ValueError(f"expected (B, {cfg.num_stages}, {cfg.num_positions}, C) canvases, "
                         f"got {tuple(canvases_BSNC.shape)}")
    index, count = shard
    lo, G = B * index, B * count  # this shard's first row and the global batch size

    def local(b_R: torch.Tensor, i_R: torch.Tensor, *more_R: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The rows of a global draw that belong to this shard, sample ids made local, on the device."""
        keep_R = (b_R >= lo) & (b_R < lo + B)
        return tuple(t[keep_R].to(device) for t in (b_R - lo, i_R, *more_R))

    class_B = drop_classes(class_labels_B, cfg.num_classes, cfg_drop, generator, shard)

    # Content: one row per (sample, stage).
    parts = {}
    if content:
        b_P, i_P = local(*_pick_stages(G, S, stages_per_sample, generator))
        canvas_PNC, labels_PN = canvases_BSNC[b_P, i_P], labels_BSN[b_P, i_P]
        x0_PNC, logits_PKV = model.forward_content(canvas_PNC, labels_PN, i_P, class_B[b_P])
        x0_mse_P = (x0_PNC - final_BNC[b_P]).pow(2).mean(dim=(1, 2))
        K = logits_PKV.shape[1]
        target_PK = torch.zeros(len(b_P), K, dtype=torch.long, device=device).scatter_(1, labels_PN, codes_BSN[b_P, i_P])
        valid_PK = torch.arange(K, device=device) < 2 ** i_P[:, None]  # rows past 2^stage are padding
        ce_PK = F.cross_entropy(logits_PKV.flatten(0, 1).float(), target_PK.flatten(), reduction="none").view_as(target_PK)
        code_ce_P = (ce_PK * valid_PK).sum(dim=1) / valid_PK.sum(dim=1)
        hit_PK = (logits_PKV.argmax(dim=-1) == target_PK) & valid_PK
        code_acc_P = hit_PK.sum(dim=1) / valid_PK.sum(dim=1)
        parts.update(x0_mse=x0_mse_P.mean(), code_ce=code_ce_P.mean(), code_acc=code_acc_P.mean())

    # Structure: one row per (sample, stage with a network); the noise is shared by a sample's stages.
    D = cfg.num_bits
    target_BND = bit_codes(labels_BSN[:, -1], D, D).float() - 1
    eps_BND = torch.randn(G, N, D, generator=generator)[lo:lo + B].to(device)
    b_Q, i_Q = _pick_stages(G, cfg.num_structure_stages, stages_per_sample, generator, structure_stage_weights)
    b_Q, i_Q, t_Q = local(b_Q, i_Q, torch.sigmoid(torch.randn(len(b_Q), generator=generator)))
    error_QND = flow_error(model, canvases_BSNC[b_Q, i_Q + 1], labels_BSN[b_Q, i_Q], target_BND[b_Q], eps_BND[b_Q],
                           i_Q, t_Q, class_B[b_Q])
    parts["structure_mse"] = error_QND.mean()
    parts["split_mse"] = error_QND.gather(2, i_Q[:, None, None].expand(-1, N, 1)).mean()

    loss = parts.get("x0_mse", 0) + parts.get("code_ce", 0) + parts["structure_mse"] + split_weight * parts["split_mse"]
    parts = {"loss": loss, **parts}
    return loss, {name: value.detach() for name, value in parts.items()}


def flow_error(model: NVGTransformer, canvas_QNC: torch.Tensor, labels_QN: torch.Tensor, target_QND: torch.Tensor,
               eps_QND: torch.Tensor, stage_Q: torch.Tensor, t_Q: torch.Tensor, class_Q: torch.Tensor) -> torch.Tensor:
    """Squared error (Q, N, D) of the structure flow's velocity at stage stage_Q[q] and time t_Q[q].

    canvas_QNC: the canvas after the stage's content (the flow condition); labels_QN: the stage's map.
    The first stage_Q dims of the noise are replaced by the known target bits; z_t = t eps + (1 - t) target;
    the velocity should be eps - target.
    """
    known_QD = torch.arange(target_QND.shape[-1], device=target_QND.device) < stage_Q[:, None]
    eps_QND = torch.where(known_QD[:, None], target_QND, eps_QND)
    z_QND = t_Q[:, None, None] * eps_QND + (1 - t_Q[:, None, None]) * target_QND
    v_QND = model.forward_structure(canvas_QNC, z_QND, labels_QN, stage_Q, t_Q, class_Q)
    return (eps_QND - v_QND - target_QND).pow(2)


def canvas_scale_factors(canvases_BSNC: torch.Tensor, final_BNC: torch.Tensor) -> tuple[float, ...]:
    """Scale factors for a new tokenizer: 1 / std of the canvas before each stage i >= 1, 1 / std of the
    final latent last; stage 0 (an empty canvas, replaced by the start embedding) gets 1.
    The official values look measured this way on ImageNet canvases."""
    stds = [canvases_BSNC[:, i].float().std().item() for i in range(1, canvases_BSNC.shape[1])]
    return (1.0, *(1.0 / s for s in stds), 1.0 / final_BNC.float().std().item())
