"""Stage-by-stage NVG sampling: schedules, token sampling, the structure flow, and the stage iterator.

One stage i does: (1) the content pass predicts one code per stage-i cluster, which is added to the
canvas; (2) the structure step decides how each cluster splits into two equal halves for stage i + 1
(a rectified flow for the stages with a network, pure noise for the last split, nothing at the end).
`iter_stages` yields after every stage; everything else (generate, lock and regenerate, sketches,
class swaps) is built on it. Guidance lives here, not in the model: a guided pass batches the class and
the null class and mixes the outputs.

Randomness: every random number comes from CPU torch.Generators (one per image, or one shared) and is
moved to the device, so a seed draws the same numbers on CPU, CUDA and MPS and an image does not depend on
the batch it was made in. The structure noise can also be supplied (`structure_noise`, like diffusers'
`latents`). The default split rule ("official", torch.topk as the authors) resolves tied scores in
topk's implementation-defined order, so maps repeat exactly on one device type; split_rule="stable" breaks
ties explicitly and gives the same maps on every device.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .limits import MAX_FLOW_STEPS, Deadline
from .locks import Locks
from .structure import bit_codes

Generators = torch.Generator | Sequence[torch.Generator] | None
SPLIT_RULES = ("official", "stable")  # see top_half


# --------------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------------


def linear_schedule(start: float, end: float, num_stages: int) -> list[float]:
    """Evenly spaced values from start to end, one per stage (the official guidance ramps)."""
    return np.linspace(start, end, num_stages).tolist()


def slow_then_fast_schedule(start: float, end: float, num_stages: int) -> list[float]:
    """Values that move slowly first and fast at the end (the official top-p curve, 1 -> 0.5).

    p_k = end + (start - end) * (B - B^(k / K)) / (B - 1) with B = K = num_stages - 1.
    """
    K = num_stages - 1
    return [end + (start - end) * (K - K ** (k / K)) / (K - 1) for k in range(num_stages)]


def per_stage(value: float | Sequence[float], num_stages: int, name: str) -> list[float]:
    """A constant or an explicit list of per-stage values, checked for length and refused unless every
    value is a finite number (NaN and infinities are JSON that Python reads)."""
    if isinstance(value, (str, bytes, dict)):
        raise ValueError(f"{name} must be a number or one number per stage, got {type(value).__name__}")
    try:
        values = [value] * num_stages if isinstance(value, numbers.Number) else list(value)
    except TypeError:
        raise ValueError(f"{name} must be a number or one number per stage, got {type(value).__name__}") from None
    if len(values) != num_stages:
        raise ValueError(f"{name} needs one value per stage ({num_stages}), got {len(values)}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{name} values must be finite numbers, got {v!r}"[:120])
    return [float(v) for v in values]


# The authors' sampling settings: SamplingOptions' defaults, written out for a model by official_options.
# Each schedule: (its shape, its value at the first stage, at the last stage).
OFFICIAL_SCHEDULES = {"content_guidance": (linear_schedule, 1.0, 3.5),
                      "structure_guidance": (linear_schedule, 1.0, 2.5),
                      "top_p": (slow_then_fast_schedule, 1.0, 0.5)}
OFFICIAL_FLOW_STEPS = 25


@dataclass
class SamplingOptions:
    """Controls of one sampling run. Per-stage fields take a constant or one value per stage.

    The defaults are the authors' settings (OFFICIAL_SCHEDULES for the schedules left at None); a model
    folder stores its own, every one written out (NVGPipeline.default_options), and runs start from those.
    """

    content_guidance: float | Sequence[float] | None = None  # None: the authors' schedule (linear 1 -> 3.5)
    structure_guidance: float | Sequence[float] | None = None  # None: the authors' schedule (linear 1 -> 2.5)
    top_p: float | Sequence[float] | None = None  # None: the authors' schedule (1 -> 0.5, slow then fast)
    top_k: int | Sequence[int] = 0  # 0: off; 1: argmax
    temperature: float | Sequence[float] = 1.0
    flow_steps: int = OFFICIAL_FLOW_STEPS
    gumbel_split: bool = False  # sample the split (Gumbel top-k) instead of taking the top half
    # How tied split keys are resolved: "official" = torch.topk as the authors (reproduces their maps, on one
    # device type); "stable" = unclamped score, then position (the same maps on every device).
    split_rule: str = "official"

    def resolved(self, num_stages: int) -> dict[str, list[float]]:
        """Every per-stage control as a list of num_stages values."""
        steps = self.flow_steps
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= MAX_FLOW_STEPS:
            raise ValueError(f"flow_steps must be a whole number from 1 to {MAX_FLOW_STEPS} "
                             f"(nvg_core.limits.MAX_FLOW_STEPS), got {steps!r}"[:160])
        if not isinstance(self.gumbel_split, bool):
            raise ValueError(f"gumbel_split must be true or false, got {self.gumbel_split!r}"[:80])
        if not isinstance(self.split_rule, str) or self.split_rule not in SPLIT_RULES:
            raise ValueError(f"split_rule must be one of {SPLIT_RULES}, got {self.split_rule!r}")
        out = {name: shape(first, last, num_stages) if getattr(self, name) is None
               else per_stage(getattr(self, name), num_stages, name)
               for name, (shape, first, last) in OFFICIAL_SCHEDULES.items()}
        out["top_k"] = per_stage(self.top_k, num_stages, "top_k")
        out["temperature"] = per_stage(self.temperature, num_stages, "temperature")
        for p in out["top_p"]:
            if not 0 < p <= 1:
                raise ValueError(f"top_p values must be in (0, 1], got {p}")
        for t in out["temperature"]:
            if t <= 0:
                raise ValueError(f"temperature must be positive, got {t}")
        for k in out["top_k"]:
            if k < 0 or k != int(k):
                raise ValueError(f"top_k values must be whole numbers from 0, got {k}")
        return out

    def explicit(self, num_stages: int) -> SamplingOptions:
        """A checked copy with every per-stage control written out as num_stages values (top_k as ints).

        This is what a model folder stores, so that no default is filled in at run time.
        """
        plan = self.resolved(num_stages)
        return replace(self, **{**plan, "top_k": [int(k) for k in plan["top_k"]]})

    def with_last_stage(self, num_stages: int, content_guidance: float | None = None,
                        structure_guidance: float | None = None, top_p: float | None = None) -> SamplingOptions:
        """An explicit copy whose given schedules are moved so that their last stage takes the given value.

        The move fades to nothing at stage 0 along the schedule's shape in OFFICIAL_SCHEDULES (linear for
        guidance, slow then fast for top-p), so stage 0 and a model's early-stage choices stay as they are,
        and the authors' schedule ending at v becomes the authors' shape ending at v (up to rounding).
        Top-p is capped at 1. A value left at None keeps its schedule. The app's "last stage" sliders
        set these.
        """
        options = self.explicit(num_stages)
        moved = {}
        for name, last in (("content_guidance", content_guidance), ("structure_guidance", structure_guidance),
                           ("top_p", top_p)):
            if last is not None:
                values, ramp = getattr(options, name), OFFICIAL_SCHEDULES[name][0](0.0, 1.0, num_stages)
                moved[name] = [v + (float(last) - values[-1]) * r for v, r in zip(values, ramp)]
        if "top_p" in moved:
            moved["top_p"] = [min(1.0, p) for p in moved["top_p"]]
        return replace(options, **moved).explicit(num_stages)


def official_options(num_stages: int) -> SamplingOptions:
    """The authors' sampling settings for a model of num_stages stages, written out: 25 structure flow
    steps, content guidance linear 1 -> 3.5, structure guidance linear 1 -> 2.5, top-p 1 -> 0.5 slow then
    fast, no top-k, temperature 1, no Gumbel splits, the official split rule. Converted official
    checkpoints store these."""
    return SamplingOptions().explicit(num_stages)


# --------------------------------------------------------------------------------------------------
# Random numbers from CPU generators
# --------------------------------------------------------------------------------------------------


def gumbel(uniform: torch.Tensor) -> torch.Tensor:
    """Gumbel noise from uniform numbers in [0, 1), with the authors' guards: -log(-log(u + 1e-8) + 1e-8)."""
    return -torch.log(-torch.log(uniform + 1e-8) + 1e-8)


def _draw(kind: str, generators: Generators, batch: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """(batch, *shape) normal or uniform numbers from CPU generators, moved to `device`.

    With a list, image b draws from generators[b], so its numbers do not depend on the batch.
    """
    sample = torch.randn if kind == "normal" else torch.rand
    if isinstance(generators, Sequence):
        if len(generators) != batch:
            raise ValueError(f"got {len(generators)} generators for a batch of {batch}")
        out = torch.stack([sample(shape, generator=g) for g in generators])
    else:
        out = sample((batch, *shape), generator=generators)
    return out.to(device)


# --------------------------------------------------------------------------------------------------
# Content tokens
# --------------------------------------------------------------------------------------------------


def guided(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: uncond + scale * (cond - uncond)."""
    return uncond + scale * (cond - uncond)


def sample_tokens(logits_BKV: torch.Tensor, uniform_BK: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """One code per cluster by temperature, top-k and nucleus (top-p) filtering and inverse-CDF sampling.

    The nucleus keeps the smallest prefix of the sorted distribution whose mass reaches top_p (at least one
    code). top_k == 1 is argmax. The uniform numbers come from the caller's CPU generators.
    """
    if top_k == 1:
        return logits_BKV.argmax(dim=-1)
    probs_BKV = torch.softmax(logits_BKV.float() / temperature, dim=-1)
    sorted_BKV, order_BKV = probs_BKV.sort(dim=-1, descending=True, stable=True)
    keep_BKV = (sorted_BKV.cumsum(dim=-1) - sorted_BKV) < top_p
    if top_k > 0:
        keep_BKV[..., top_k:] = False
    keep_BKV[..., 0] = True
    sorted_BKV = sorted_BKV * keep_BKV
    cdf_BKV = sorted_BKV.cumsum(dim=-1)
    target_BK1 = (uniform_BK * cdf_BKV[..., -1]).unsqueeze(-1)
    pick_BK = torch.searchsorted(cdf_BKV, target_BK1, right=True).squeeze(-1)
    pick_BK = pick_BK.clamp(max=keep_BKV.sum(-1) - 1)  # float round-off at the top end
    return order_BKV.gather(-1, pick_BK.unsqueeze(-1)).squeeze(-1)


# --------------------------------------------------------------------------------------------------
# Structure: splits and the rectified flow
# --------------------------------------------------------------------------------------------------


def flow_times(steps: int, shift: float = 0.5) -> list[float]:
    """Time grid from 1 (noise) to 0 (data), warped by the FLUX shift with mu = `shift`."""
    ts = np.linspace(1.0, 0.0, steps + 1)
    with np.errstate(divide="ignore"):
        warped = math.exp(shift) / (math.exp(shift) + 1.0 / ts - 1.0)
    return np.where(ts > 0, warped, 0.0).tolist()


def split_keys(scores_BKE: torch.Tensor, gumbel_BKE: torch.Tensor | None = None) -> torch.Tensor:
    """The authors' split arithmetic on each cluster's row of scores (B, K clusters, E members).

    Scores are clamped to [-1, 1], shifted by 1 and divided by the row's sum; with Gumbel noise the key is
    log(p + 1e-8) + gumbel (sampling E/2 members without replacement), else p itself.
    """
    probs_BKE = scores_BKE.float().clamp(-1, 1) + 1
    probs_BKE = probs_BKE / probs_BKE.sum(dim=-1, keepdim=True)
    return probs_BKE if gumbel_BKE is None else torch.log(probs_BKE + 1e-8) + gumbel_BKE


def top_half(keys_BKE: torch.Tensor, scores_BKE: torch.Tensor, rule: str) -> torch.Tensor:
    """Indices (B, K, E/2) of the members of each row that get bit 1.

    "official": torch.topk of the keys, as the authors do; which of several tied keys it picks is up to
    topk's implementation, so maps are reproducible on one device type (and torch build), not across them.
    "stable": ties broken by the unclamped score, then by position (earlier wins): the same map on every device.
    """
    half = keys_BKE.shape[-1] // 2
    if rule == "official":
        return keys_BKE.topk(half, dim=-1).indices
    if rule != "stable":
        raise ValueError(f"split_rule must be one of {SPLIT_RULES}, got {rule!r}")
    order_BKE = (-scores_BKE.float()).argsort(dim=-1, stable=True)  # least significant key first
    order_BKE = order_BKE.gather(-1, (-keys_BKE.gather(-1, order_BKE)).argsort(dim=-1, stable=True))
    return order_BKE[..., :half]


def split_clusters(labels_BN: torch.Tensor, stage: int, scores_BN: torch.Tensor,
                   gumbel_BN: torch.Tensor | None = None, rule: str = "official") -> torch.Tensor:
    """Halve every stage-`stage` cluster: the top half of each cluster's scores get bit 1 (label 2p+1), the rest 2p.

    As in the authors' sampler, positions are grouped by label (stable, so in position order inside a
    cluster), each cluster's scores go through `split_keys` and its top half is chosen by `top_half` under
    `rule`. Gumbel noise is per position (it is gathered into the same layout).
    """
    B, N = labels_BN.shape
    E = N // 2**stage
    order_BN = labels_BN.argsort(dim=1, stable=True)
    scores_BKE = scores_BN.gather(1, order_BN).view(B, -1, E)
    gumbel_BKE = None if gumbel_BN is None else gumbel_BN.gather(1, order_BN).view(B, -1, E)
    top_BKH = top_half(split_keys(scores_BKE, gumbel_BKE), scores_BKE, rule)
    bit_BKE = torch.zeros_like(scores_BKE, dtype=torch.long).scatter_(-1, top_BKH, 1)
    bit_BN = torch.empty_like(labels_BN).scatter_(1, order_BN, bit_BKE.view(B, N))
    return 2 * labels_BN + bit_BN


def structure_flow(model, canvas_BNC: torch.Tensor, labels_BN: torch.Tensor, stage: int, noise_BND: torch.Tensor,
                   class_B: torch.Tensor, null_B: torch.Tensor | None, guidance: float, steps: int,
                   held: tuple[torch.Tensor, torch.Tensor] | None = None, deadline: Deadline | None = None) -> torch.Tensor:
    """Integrate the structure flow from noise to bits; returns the final state (B, N, D).

    Known bits (the first `stage` dims) are reset to +-1 after every Euler step; guidance (null_B given)
    mixes the velocities of the class and the null class. held = (next map, kept (B, N)): the kept
    positions' bit of this split is known too, so the free positions split in the context of the kept ones.
    deadline: checked before every step (TimeBudgetExceeded once it has passed).
    """
    D = noise_BND.shape[-1]
    known_BND = bit_codes(labels_BN, stage, D).float() - 1
    known_BND_mask = (torch.arange(D, device=noise_BND.device) < stage).expand_as(known_BND)
    if held is not None:
        next_BN, kept_BN = held
        at_split_BND = kept_BN[..., None] & (torch.arange(D, device=noise_BND.device) == stage)
        known_BND = torch.where(at_split_BND, bit_codes(next_BN, stage + 1, D).float() - 1, known_BND)
        known_BND_mask = known_BND_mask | at_split_BND
    z_BND = torch.where(known_BND_mask, known_BND, noise_BND)
    times = flow_times(steps)
    for step, (t_cur, t_next) in enumerate(zip(times[:-1], times[1:])):
        if deadline is not None:
            deadline.check(f"stage {stage}, flow step {step + 1} of {steps}")
        t_B = torch.full((len(z_BND),), t_cur, device=z_BND.device)
        if null_B is None:
            v_BND = model.forward_structure(canvas_BNC, z_BND, labels_BN, stage, t_B, class_B)
        else:
            v_2BND = model.forward_structure(canvas_BNC.repeat(2, 1, 1), z_BND.repeat(2, 1, 1), labels_BN.repeat(2, 1),
                                             stage, t_B.repeat(2), torch.cat([class_B, null_B]))
            v_BND = guided(*v_2BND.chunk(2), guidance)
        z_BND = torch.where(known_BND_mask, known_BND, z_BND + (t_next - t_cur) * v_BND)
    return z_BND


# --------------------------------------------------------------------------------------------------
# The stage iterator
# --------------------------------------------------------------------------------------------------


@dataclass
class StageOutput:
    """What one stage produced. Cluster k of a stage is the positions whose label is k."""

    stage: int
    labels_BN: torch.Tensor  # this stage's structure map
    ids_BK: torch.Tensor  # one code per cluster, K = 2^stage
    canvas_BNC: torch.Tensor  # the latent canvas after this stage's content
    next_labels_BN: torch.Tensor | None  # the map of stage + 1 (None after the last stage)
    images: torch.Tensor | None = None  # decoded preview of the canvas, pixels in [-1, 1], when asked


@dataclass
class NVGResult:
    """A finished generation: everything needed to show, lock or regenerate any of its stages."""

    class_labels_BS: torch.Tensor  # the class used at each stage
    labels_BSN: torch.Tensor  # structure maps of all stages
    ids: list[torch.Tensor] = field(default_factory=list)  # per stage: (B, 2^stage) codes
    canvas_BNC: torch.Tensor | None = None  # final latent
    images: torch.Tensor | None = None  # pixels in [-1, 1]
    recipes: list[Any] | None = None  # per image, what made it (a nvg_core.recipe.Recipe); None for a foreign image

    def __len__(self) -> int:
        return len(self.labels_BSN)

    @property
    def codes_BSN(self) -> torch.Tensor:
        """At every position, the code of its cluster at each stage (what the tokenizer decodes)."""
        return torch.stack([ids.gather(1, labels) for ids, labels in zip(self.ids, self.labels_BSN.unbind(1))], dim=1)

    def select(self, index: int | Sequence[int]) -> NVGResult:
        """The images at `index` (an int or a list of ints) as a new result; each keeps its recipe (that of
        its run and its place in it)."""
        idx = [index] if isinstance(index, int) else list(index)
        return NVGResult(self.class_labels_BS[idx], self.labels_BSN[idx], [ids[idx] for ids in self.ids],
                         None if self.canvas_BNC is None else self.canvas_BNC[idx],
                         None if self.images is None else self.images[idx],
                         None if self.recipes is None else [self.recipes[i] for i in idx])


def class_schedule(class_labels: torch.Tensor, num_stages: int, num_classes: int) -> torch.Tensor:
    """(B,) or (B, S) class ids -> (B, S): the class used at every stage, range-checked."""
    class_labels = torch.as_tensor(class_labels, dtype=torch.long)
    if class_labels.ndim == 1:
        class_labels = class_labels[:, None].expand(-1, num_stages)
    if class_labels.ndim != 2 or class_labels.shape[1] != num_stages:
        raise ValueError(f"class_labels must be (B,) or (B, {num_stages}), got {tuple(class_labels.shape)}")
    if class_labels.numel() and (class_labels.min() < 0 or class_labels.max() >= num_classes):
        raise ValueError(f"class ids must be in [0, {num_classes}), got {class_labels.unique().tolist()}")
    return class_labels


@torch.inference_mode()
def iter_stages(model, tokenizer, class_labels: torch.Tensor, generator: Generators = None,
                options: SamplingOptions | None = None, locks: Locks | None = None, preview: bool = False,
                structure_noise: torch.Tensor | None = None, deadline: Deadline | None = None) -> Iterator[StageOutput]:
    """Generate stage by stage, yielding a StageOutput after every stage.

    class_labels: (B,) or (B, S) per-stage class ids (a class swap from stage k is a change of column k).
    locks: what to keep from a source (nvg_core.locks.Locks: earlier stages of a result, a reference's or
        a sketch's maps, everything outside a mask); kept codes and maps replace the sampled ones, cluster
        by cluster, and a stage whose codes are all kept skips its content pass.
    structure_noise: (B, N, D) finite start noise of the structure flows (the authors' `structure_noise`,
        shared by every stage; dim S-2 decides the last split) instead of the generator's draw.
    deadline: checked before every network pass; a run past it stops with limits.TimeBudgetExceeded.
    Every random number is drawn whether or not a stage is kept or the noise supplied, so a seed's
    other numbers do not depend on what was locked or given.
    """
    options = options or SamplingOptions()
    cfg = model.spec
    S, N, D = cfg.num_stages, cfg.grid_size**2, cfg.num_stages - 1
    device = next(model.parameters()).device
    classes_BS = class_schedule(class_labels, S, cfg.num_classes).to(device)
    B = len(classes_BS)
    plan = options.resolved(S)
    if locks is not None:
        if locks.labels_BSN.shape[-1] != N or locks.labels_BSN.shape[1] > S:
            raise ValueError(f"locked maps must be (B, k+1 <= {S}, N={N}), got {tuple(locks.labels_BSN.shape)}")
        locks = locks.for_batch(B, device)
    null_B = torch.full((B,), cfg.num_classes, device=device)
    noise_BND = _draw("normal", generator, B, (N, D), device)
    if structure_noise is not None:
        noise_BND = checked_noise(structure_noise, (B, N, D)).to(device)
    labels_BN = torch.zeros(B, N, dtype=torch.long, device=device)
    canvas_BNC = torch.zeros(B, N, cfg.latent_channels, device=device)
    for stage in range(S):
        uniform_BK = _draw("uniform", generator, B, (2**stage,), device)
        gumbel_BN = gumbel(_draw("uniform", generator, B, (N,), device)) if options.gumbel_split else None
        class_B = classes_BS[:, stage]
        if deadline is not None:
            deadline.check(f"stage {stage} of 0..{S - 1}")
        kept_codes = None if locks is None else locks.codes(stage, labels_BN)
        if kept_codes is not None and kept_codes[1].all():
            ids_BK = kept_codes[0]
        else:
            ids_BK = _content_step(model, canvas_BNC, labels_BN, stage, class_B, null_B, uniform_BK, plan)
            if kept_codes is not None:
                ids_BK = torch.where(kept_codes[1], kept_codes[0], ids_BK)
        canvas_BNC = canvas_BNC + tokenizer.stage_term(ids_BK.gather(1, labels_BN), stage)
        kept_map = None if locks is None or stage == S - 1 else locks.next_map(stage)
        if stage == S - 1:
            next_BN = None
        elif kept_map is not None and kept_map[1].all():
            next_BN = kept_map[0]
        else:
            if stage == S - 2:  # the last split has no network: a random halving by the noise, no Gumbel
                next_BN = split_clusters(labels_BN, stage, noise_BND[:, :, stage], rule=options.split_rule)
            else:
                guidance = plan["structure_guidance"][stage]
                z_BND = structure_flow(model, canvas_BNC, labels_BN, stage, noise_BND, class_B,
                                       null_B if guidance != 1.0 else None, guidance, options.flow_steps, kept_map,
                                       deadline)
                next_BN = split_clusters(labels_BN, stage, z_BND[:, :, stage], gumbel_BN, options.split_rule)
            if kept_map is not None:  # whole clusters are kept or free, so the merged map is a balanced tree
                next_BN = torch.where(kept_map[1], kept_map[0], next_BN)
        images = tokenizer.decode_latent(canvas_BNC) if preview else None
        yield StageOutput(stage, labels_BN, ids_BK, canvas_BNC, next_BN, images)
        labels_BN = next_BN


def checked_noise(noise: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Supplied structure noise as a float tensor, refused unless it has `shape` and is finite."""
    noise = torch.as_tensor(noise, dtype=torch.float32)
    if tuple(noise.shape) != shape:
        raise ValueError(f"structure_noise must have shape (B, N, D) = {shape}, got {tuple(noise.shape)}")
    if not torch.isfinite(noise).all():
        raise ValueError("structure_noise contains NaN or infinite values")
    return noise


def _content_step(model, canvas_BNC, labels_BN, stage, class_B, null_B, uniform_BK, plan) -> torch.Tensor:
    """One content pass (guided when the stage's scale is not 1) and the sampled code per cluster."""
    guidance = plan["content_guidance"][stage]
    if guidance == 1.0:
        _, logits_BKV = model.forward_content(canvas_BNC, labels_BN, stage, class_B)
    else:
        _, logits_2BKV = model.forward_content(canvas_BNC.repeat(2, 1, 1), labels_BN.repeat(2, 1), stage,
                                               torch.cat([class_B, null_B]))
        logits_BKV = guided(*logits_2BKV.chunk(2), guidance)
    return sample_tokens(logits_BKV, uniform_BK, plan["temperature"][stage], int(plan["top_k"][stage]), plan["top_p"][stage])


def result_from_stages(stages: Sequence[StageOutput], class_labels_BS: torch.Tensor, images: torch.Tensor) -> NVGResult:
    """Collect the outputs of every stage of a run into an NVGResult."""
    canvas_BNC = stages[-1].canvas_BNC
    return NVGResult(class_labels_BS.to(canvas_BNC.device), torch.stack([s.labels_BN for s in stages], dim=1),
                     [s.ids_BK for s in stages], canvas_BNC, images)


def generate(model, tokenizer, class_labels: torch.Tensor, generator: Generators = None,
             options: SamplingOptions | None = None, locks: Locks | None = None,
             structure_noise: torch.Tensor | None = None,
             on_stage: Callable[[StageOutput], None] | None = None) -> NVGResult:
    """Run every stage (see iter_stages for the arguments) and decode the final canvas. on_stage (a progress
    bar, a diffusers callback) sees each StageOutput as it is made."""
    stages = []
    for stage in iter_stages(model, tokenizer, class_labels, generator, options, locks, structure_noise=structure_noise):
        stages.append(stage)
        if on_stage is not None:
            on_stage(stage)
    cfg = model.spec
    with torch.inference_mode():
        images = tokenizer.decode_latent(stages[-1].canvas_BNC)
    return result_from_stages(stages, class_schedule(class_labels, cfg.num_stages, cfg.num_classes), images)
