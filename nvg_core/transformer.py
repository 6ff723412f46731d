"""The NVG transformer: a content branch, a structure branch and structure-aware RoPE.

Both branches are stacks of FLUX-style parallel blocks conditioned by adaLN on a vector `vec`.

Content branch (one pass per stage i): [class token] + one token per position of the current canvas
(times scale_factors[i]; a learned start canvas at stage 0). It predicts the final latent x0; the cluster
means of (x0 - canvas) over the stage-i clusters are mapped linearly to code logits, one row per cluster.

Structure branch (one pass per flow step of stages 0 .. S-3): the canvas after stage i's content and the
flow state z (B, N, D) with D = log2(N) bit dims; it predicts the flow velocity. Two token layouts:
"official" = [class] + N canvas tokens + N state tokens (the authors' 2N + 1 sequence); "additive" =
[class] + N tokens holding canvas embedding + state embedding (half the sequence, for small CPU models).

RoPE (`StructureRoPE`) rotates adjacent dim pairs of every head over 3 + D position axes: token type, one
axis per structure bit (the 0/1/2 code of `structure.bit_codes`, angle = value), row, column. Positions of
one cluster therefore share their bit-axis angles.

Module and parameter names follow the authors' `nvgformer` so their checkpoints load by stripping that
prefix. Guidance is not done here: the sampler batches the class and the null class (index num_classes).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
# DiffusionPipeline.from_pretrained finds a component's load method through this name in the component's module.
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401
from torch import nn

from .modeling import SpecModel
from .structure import bit_codes, num_stages

OFFICIAL_SCALE_FACTORS = (1.0, 4.1993, 3.4706, 3.0520, 2.7430, 2.4842, 2.2407, 2.0088, 1.7954, 1.6080)

Stage = int | torch.Tensor  # one stage for the whole batch, or a LongTensor (B,) of per-sample stages


def rope_axes(head_dim: int, num_bits: int) -> tuple[int, ...]:
    """Rotary widths of the position axes: (type, bit_1 .. bit_D, row, col), summing to head_dim.

    Official (head_dim 64, D = 8): 8, 2 x 8, 20, 20. Other heads: every bit axis keeps width 2 (one pair,
    angle = code value), the type axis gets head_dim / 8 (at least 2), row and column split the rest
    equally; each must be even and non-empty.
    """
    type_width = max(2, head_dim // 8 // 2 * 2)
    spatial = (head_dim - type_width - 2 * num_bits) // 2
    if spatial < 2 or spatial % 2 or type_width + 2 * num_bits + 2 * spatial != head_dim:
        raise ValueError(f"head dim {head_dim} cannot hold RoPE for {num_bits} structure bits and a 2-D grid")
    return (type_width,) + (2,) * num_bits + (spatial, spatial)


@dataclass
class TransformerConfig:
    """Sizes of both branches. structure_hidden / structure_heads default to half the content ones
    (resolved at construction, so dataclasses.replace keeps them unless given)."""

    depth: int = 16  # blocks per branch
    hidden: int = 1024  # content width
    heads: int = 16
    structure_hidden: int | None = None
    structure_heads: int | None = None
    mlp_ratio: float = 4.0
    latent_channels: int = 32
    codebook_size: int = 4096
    num_classes: int = 1000  # the null class is index num_classes
    grid_size: int = 16  # N = grid_size^2 positions
    # scale_factors[i] multiplies the canvas fed to stage i; the last one divides the x0 head's output.
    scale_factors: tuple[float, ...] = OFFICIAL_SCALE_FACTORS
    structure_layout: str = "official"  # "official" (2N + 1 tokens) or "additive" (N + 1 tokens)
    drop_path: float = 0.0  # largest drop-path rate, linear over the blocks (official training: 0.1 * depth / 24)
    # Bundled-model option (off in the official layout): a zero-initialised linear map of the RMS-normalised
    # class embedding is added to the structure branch's adaLN vector, so the class is not drowned by the
    # time embedding (norm ~10 against ~0.2 for the class rows in the first emoji model). Named use_...: a
    # diffusers config key would shadow the submodule structure_class_proj.
    use_structure_class_proj: bool = False

    def __post_init__(self):
        self.structure_hidden = self.structure_hidden or self.hidden // 2
        self.structure_heads = self.structure_heads or self.heads // 2
        self.scale_factors = tuple(float(s) for s in self.scale_factors)
        if len(self.scale_factors) != self.num_stages + 1:
            raise ValueError(f"scale_factors needs num_stages + 1 = {self.num_stages + 1} values, "
                             f"got {len(self.scale_factors)}")
        if self.structure_layout not in ("official", "additive"):
            raise ValueError(f"structure_layout must be 'official' or 'additive', got {self.structure_layout!r}")
        for width, heads in ((self.hidden, self.heads), (self.structure_hidden, self.structure_heads)):
            if heads < 1 or width % heads:
                raise ValueError(f"width {width} is not divisible into {heads} heads")
            rope_axes(width // heads, self.num_bits)  # raises if the head is too narrow

    @property
    def num_positions(self) -> int:
        return self.grid_size**2

    @property
    def num_stages(self) -> int:
        return num_stages(self.num_positions)

    @property
    def num_bits(self) -> int:
        """Structure bit dims D = log2(N): the flow state width and the number of RoPE bit axes."""
        return self.num_stages - 1

    @property
    def num_structure_stages(self) -> int:
        """Stages with a structure network (the last split is random, the last stage has none)."""
        return self.num_stages - 2


def _official(depth: int) -> TransformerConfig:
    return TransformerConfig(depth=depth, hidden=64 * depth, heads=depth)


_EMOJI_S = TransformerConfig(depth=6, hidden=256, heads=4, structure_hidden=128, structure_heads=2,
                             codebook_size=1024, num_classes=32, structure_layout="additive")
TRANSFORMER_CONFIGS: dict[str, TransformerConfig] = {
    # The authors' ImageNet 256 generators (inference totals 319,553,576 / 621,575,720 / 1,071,448,104).
    "official-d16": _official(16),
    "official-d20": _official(20),
    "official-d24": _official(24),
    # The bundled CPU model: 16x16 grid, head dim 64. Its scale factors should be re-measured on the
    # emoji tokenizer's canvases (objective.canvas_scale_factors) and saved with the weights.
    "emoji-s": _EMOJI_S,
    # The same on an 8x8 grid (7 stages, for the emoji-f8 tokenizer); training measures the scale factors.
    "emoji-s8": replace(_EMOJI_S, grid_size=8, scale_factors=(1.0,) * 8),
    # For tests: a 4x4 grid (5 stages), head dim 32.
    "tiny": TransformerConfig(depth=2, hidden=64, heads=2, structure_hidden=32, structure_heads=1,
                              latent_channels=4, codebook_size=16, num_classes=4, grid_size=4,
                              scale_factors=(1.0, 3.0, 2.5, 2.0, 1.5, 1.25)),
}


# --------------------------------------------------------------------------------------------------
# Structure-aware RoPE
# --------------------------------------------------------------------------------------------------


class StructureRoPE(nn.Module):
    """FLUX multi-axis RoPE, fp32: pair (2k, 2k+1) of a head turns by angle = axis value * frequency.

    Frequencies of an axis of width w are theta^(-2j/w), j < w/2 (theta 1e4): the type axis of width 8 has
    1, 0.1, 0.01, 0.001; a bit axis (width 2) has 1. Token ids: class token all ones (type 1, every bit
    undecided, row 1, col 1: the official quirk); position tokens (type, bit code, row, col), type 0 for
    canvas and state tokens, 2 for the structure branch's canvas-condition tokens. No parameters.
    """

    def __init__(self, head_dim: int, num_bits: int, grid_size: int, theta: float = 1e4):
        super().__init__()
        widths = rope_axes(head_dim, num_bits)
        self.grid_size = grid_size
        self.num_axes = len(widths)
        self.freqs = [theta ** (-2 * j / w) for w in widths for j in range(w // 2)]
        self.axis_of_pair = [a for a, w in enumerate(widths) for _ in range(w // 2)]

    def position_ids(self, codes_BND: torch.Tensor, token_type: int) -> torch.Tensor:
        """Ids (B, N, axes) of the position tokens from their 0/1/2 bit codes."""
        B, N, _ = codes_BND.shape
        pos_N = torch.arange(N, device=codes_BND.device)
        rowcol_BN2 = torch.stack([pos_N // self.grid_size, pos_N % self.grid_size], dim=-1).expand(B, N, 2)
        type_BN1 = torch.full((B, N, 1), token_type, device=codes_BND.device)
        return torch.cat([type_BN1, codes_BND, rowcol_BN2], dim=-1).float()

    def class_ids(self, batch: int, device: torch.device) -> torch.Tensor:
        """Ids (B, 1, axes) of the class token: all ones."""
        return torch.ones(batch, 1, self.num_axes, device=device)

    def forward(self, ids_BLA: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of every pair's angle, each (B, 1, L, head_dim / 2) for broadcasting over heads."""
        freqs_P = torch.tensor(self.freqs, dtype=torch.float32, device=ids_BLA.device)
        axis_P = torch.tensor(self.axis_of_pair, device=ids_BLA.device)
        angles_BLP = ids_BLA.float()[..., axis_P] * freqs_P
        return angles_BLP.cos()[:, None], angles_BLP.sin()[:, None]


def apply_rope(x_BHLD: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate adjacent pairs (x_2k, x_2k+1) by the angles of `rope` (computed in fp32)."""
    cos, sin = rope
    even, odd = x_BHLD.float().unflatten(-1, (-1, 2)).unbind(-1)
    rotated = torch.stack([cos * even - sin * odd, sin * even + cos * odd], dim=-1)
    return rotated.flatten(-2).type_as(x_BHLD)


# --------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """RMS norm in fp32 with a learned scale (eps 1e-6)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-6)).type_as(x) * self.scale


class QKNorm(nn.Module):
    """Per-head RMS norms of queries and keys (a container, named as in the official checkpoints)."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.query_norm = RMSNorm(head_dim)
        self.key_norm = RMSNorm(head_dim)


class Modulation(nn.Module):
    """adaLN: SiLU(vec) -> shift, scale, gate, each (B, 1, C)."""

    def __init__(self, width: int):
        super().__init__()
        self.lin = nn.Linear(width, 3 * width)

    def forward(self, vec_BC: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.lin(F.silu(vec_BC))[:, None].chunk(3, dim=-1)


class ParallelBlock(nn.Module):
    """FLUX single-stream block: one linear for qkv and the MLP input, one for attention + MLP output."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.heads = heads
        self.mlp_width = int(width * mlp_ratio)
        self.drop_path = drop_path
        self.linear1 = nn.Linear(width, 3 * width + self.mlp_width)
        self.linear2 = nn.Linear(width + self.mlp_width, width)
        self.norm = QKNorm(width // heads)
        self.modulation = Modulation(width)

    def forward(self, x_BLC: torch.Tensor, vec_BC: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        B, L, C = x_BLC.shape
        shift, scale, gate = self.modulation(vec_BC)
        x_mod_BLC = (1 + scale) * F.layer_norm(x_BLC, (C,), eps=1e-6) + shift
        qkv_BLC, mlp_BLM = self.linear1(x_mod_BLC).split([3 * C, self.mlp_width], dim=-1)
        q_BHLD, k_BHLD, v_BHLD = qkv_BLC.view(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q_BHLD = apply_rope(self.norm.query_norm(q_BHLD), rope).type_as(v_BHLD)
        k_BHLD = apply_rope(self.norm.key_norm(k_BHLD), rope).type_as(v_BHLD)
        attn_BLC = F.scaled_dot_product_attention(q_BHLD, k_BHLD, v_BHLD).transpose(1, 2).reshape(B, L, C)
        out_BLC = gate * self.linear2(torch.cat([attn_BLC, F.gelu(mlp_BLM, approximate="tanh")], dim=-1))
        if self.training and self.drop_path > 0:  # per-sample stochastic depth (torch's global RNG)
            keep_B11 = torch.rand(B, 1, 1, device=x_BLC.device) >= self.drop_path
            out_BLC = out_BLC * keep_B11 / (1 - self.drop_path)
        return x_BLC + out_BLC


class FinalLayer(nn.Module):
    """adaLN (shift, scale) on a non-affine LayerNorm, then a linear map."""

    def __init__(self, width: int, out_dim: int):
        super().__init__()
        self.linear = nn.Linear(width, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x_BLC: torch.Tensor, vec_BC: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(vec_BC)[:, None].chunk(2, dim=-1)
        return self.linear((1 + scale) * F.layer_norm(x_BLC, x_BLC.shape[-1:], eps=1e-6) + shift)


def timestep_embedding(t_B: torch.Tensor, dim: int = 64, factor: float = 1000.0,
                       max_period: float = 1e4) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of factor * t: cos of every frequency first, then sin."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t_B.device) / half)
    args_BH = factor * t_B.float()[:, None] * freqs
    return torch.cat([args_BH.cos(), args_BH.sin()], dim=-1)


def cluster_mean(x_BNC: torch.Tensor, labels_BN: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """Mean of x over the positions of each cluster, (B, num_clusters, C); empty clusters are 0."""
    B, N, C = x_BNC.shape
    sum_BKC = x_BNC.new_zeros(B, num_clusters, C).scatter_add(1, labels_BN[..., None].expand(B, N, C), x_BNC)
    ones_BN = torch.ones(B, N, device=x_BNC.device)
    count_BK = torch.zeros(B, num_clusters, device=x_BNC.device).scatter_add(1, labels_BN, ones_BN)
    return sum_BKC / count_BK.clamp(min=1)[..., None].to(x_BNC.dtype)


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


class NVGTransformer(SpecModel):
    """Content and structure generators of NVG (the authors' `nvgformer`, without the REPA projector); a
    diffusers model, sizes in `spec`."""

    spec_class = TransformerConfig

    @register_to_config
    def __init__(self, depth: int, hidden: int, heads: int, structure_hidden: int | None, structure_heads: int | None,
                 mlp_ratio: float, latent_channels: int, codebook_size: int, num_classes: int, grid_size: int,
                 scale_factors: Sequence[float], structure_layout: str, drop_path: float,
                 use_structure_class_proj: bool):
        super().__init__()
        cfg = self._build_spec()
        C, Cs, Z, D = cfg.hidden, cfg.structure_hidden, cfg.latent_channels, cfg.num_bits
        drop_rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]

        self.content_start_embed = nn.Parameter(torch.randn(1, cfg.num_positions, Z))
        self.content_embed = nn.Linear(Z, C)
        self.content_class_embed = nn.Embedding(cfg.num_classes + 1, C)
        self.content_stage_embed = nn.Embedding(cfg.num_stages, C)
        self.content_blocks = nn.ModuleList(ParallelBlock(C, cfg.heads, cfg.mlp_ratio, p) for p in drop_rates)
        self.x0_head = FinalLayer(C, Z)
        self.cls_head = nn.Sequential(OrderedDict(linear=nn.Linear(Z, cfg.codebook_size)))

        self.structure_embed = nn.Linear(D, Cs)
        self.structure_class_embed = nn.Embedding(cfg.num_classes + 1, Cs)
        self.structure_content_cond_embed = nn.Linear(Z, Cs)
        self.structure_stage_embed = nn.Embedding(cfg.num_structure_stages, Cs)
        if cfg.use_structure_class_proj:
            self.structure_class_proj = nn.Sequential(OrderedDict(norm=RMSNorm(Cs), linear=nn.Linear(Cs, Cs)))
        self.structure_time_embed = nn.Sequential(OrderedDict(
            in_layer=nn.Linear(64, Cs), act=nn.SiLU(), out_layer=nn.Linear(Cs, Cs)))
        self.structure_blocks = nn.ModuleList(
            ParallelBlock(Cs, cfg.structure_heads, cfg.mlp_ratio, p) for p in drop_rates)
        self.structure_head = FinalLayer(Cs, D)

        self.content_rope = StructureRoPE(C // cfg.heads, D, cfg.grid_size)
        self.structure_rope = StructureRoPE(Cs // cfg.structure_heads, D, cfg.grid_size)
        self._init_weights()

    def _init_weights(self):
        """The authors' init: xavier-uniform linears with zero bias, N(0, 0.02) embeddings (start canvas: N(0, 1))."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
        if self.spec.use_structure_class_proj:  # starts as a no-op, so it can be added to trained weights
            nn.init.zeros_(self.structure_class_proj.linear.weight)

    def compile_blocks(self) -> None:
        """torch.compile every block (one graph per batch size, reused by every block of a branch): on a CPU
        fused elementwise kernels take 10-15% off a bundled-model image after about 25 s of compiling (see
        the README's benchmarks). Opt-in: a fresh process pays the compile time again."""
        for block in [*self.content_blocks, *self.structure_blocks]:
            block.compile()

    def _stages(self, stage: Stage, batch: int, limit: int, device: torch.device) -> torch.Tensor:
        """(B,) long stages from an int or a per-sample tensor, checked against [0, limit)."""
        stage_B = torch.as_tensor(stage, device=device).long().expand(batch)
        if stage_B.numel() and not 0 <= int(stage_B.min()) <= int(stage_B.max()) < limit:
            raise ValueError(f"stages must lie in [0, {limit}), got {stage_B.unique().tolist()}")
        return stage_B

    def _codes(self, labels_BN: torch.Tensor, stage_B: torch.Tensor) -> torch.Tensor:
        """The 0/1/2 bit code (B, N, D) of every sample's map at its own stage."""
        stages = stage_B.unique().tolist()
        if len(stages) == 1:
            return bit_codes(labels_BN, stages[0], self.spec.num_bits)
        codes_BND = labels_BN.new_empty(*labels_BN.shape, self.spec.num_bits)
        for s in stages:
            rows_B = stage_B == s
            codes_BND[rows_B] = bit_codes(labels_BN[rows_B], s, self.spec.num_bits)
        return codes_BND

    def forward_content(self, canvas_BNC: torch.Tensor, labels_BN: torch.Tensor, stage: Stage,
                        class_labels_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One content pass: the predicted final latent x0 (B, N, Z) and code logits (B, 2^stage, V).

        canvas_BNC: the canvas before this stage (unscaled); labels_BN: this stage's structure map.
        With per-sample stages the logits are padded to 2^max(stage) clusters; a sample's rows at and
        beyond 2^stage are padding (cls_head of a zero mean).
        """
        cfg = self.spec
        B, N, _ = canvas_BNC.shape
        stage_B = self._stages(stage, B, cfg.num_stages, canvas_BNC.device)
        scale_S = torch.tensor(cfg.scale_factors, dtype=canvas_BNC.dtype, device=canvas_BNC.device)
        scale_B11 = scale_S[stage_B][:, None, None]
        input_BNC = torch.where((stage_B == 0)[:, None, None], self.content_start_embed, canvas_BNC * scale_B11)
        class_BC = self.content_class_embed(class_labels_B)
        vec_BC = class_BC + self.content_stage_embed(stage_B)
        x_BLC = torch.cat([class_BC[:, None], self.content_embed(input_BNC)], dim=1)
        ids_BLA = torch.cat([self.content_rope.class_ids(B, canvas_BNC.device),
                             self.content_rope.position_ids(self._codes(labels_BN, stage_B), 0)], dim=1)
        rope = self.content_rope(ids_BLA)
        for block in self.content_blocks:
            x_BLC = block(x_BLC, vec_BC, rope)
        x0_BNC = self.x0_head(x_BLC[:, 1:], vec_BC) / cfg.scale_factors[-1]
        residual_BKC = cluster_mean(x0_BNC - canvas_BNC, labels_BN, 2 ** int(stage_B.max()))
        return x0_BNC, self.cls_head(residual_BKC)

    def forward_structure(self, canvas_BNC: torch.Tensor, state_BND: torch.Tensor, labels_BN: torch.Tensor,
                          stage: Stage, t_B: torch.Tensor, class_labels_B: torch.Tensor) -> torch.Tensor:
        """One structure-flow evaluation: the velocity (B, N, D) at flow time t (1 = noise, 0 = bits).

        canvas_BNC: the canvas after this stage's content (unscaled); state_BND: the flow state
        (known bits +-1, the rest noisy); labels_BN: this stage's map (for RoPE).
        """
        cfg = self.spec
        B, N, _ = canvas_BNC.shape
        stage_B = self._stages(stage, B, cfg.num_structure_stages, canvas_BNC.device)
        class_BC = self.structure_class_embed(class_labels_B)
        vec_BC = (class_BC + self.structure_time_embed(timestep_embedding(t_B).type_as(class_BC))
                  + self.structure_stage_embed(stage_B))
        if cfg.use_structure_class_proj:
            vec_BC = vec_BC + self.structure_class_proj(class_BC)
        cond_BNC = self.structure_content_cond_embed(canvas_BNC)
        state_BNC = self.structure_embed(state_BND)
        codes_BND = self._codes(labels_BN, stage_B)
        ids = [self.structure_rope.class_ids(B, canvas_BNC.device)]
        if cfg.structure_layout == "official":
            x_BLC = torch.cat([class_BC[:, None], cond_BNC, state_BNC], dim=1)
            ids += [self.structure_rope.position_ids(codes_BND, 2), self.structure_rope.position_ids(codes_BND, 0)]
        else:
            x_BLC = torch.cat([class_BC[:, None], cond_BNC + state_BNC], dim=1)
            ids += [self.structure_rope.position_ids(codes_BND, 0)]
        rope = self.structure_rope(torch.cat(ids, dim=1))
        for block in self.structure_blocks:
            x_BLC = block(x_BLC, vec_BC, rope)
        return self.structure_head(x_BLC[:, -N:], vec_BC)


def parameter_counts(model: NVGTransformer) -> dict[str, int]:
    """Parameters per branch: content (incl. start canvas, x0 and code heads), structure, total."""
    counts = {"content": 0, "structure": 0}
    for name, p in model.named_parameters():
        counts["structure" if name.startswith("structure_") else "content"] += p.numel()
    counts["total"] = counts["content"] + counts["structure"]
    return counts
