"""The multi-granularity VQ autoencoder ("tokenizer") of NVG.

A CNN encoder maps an image to a G x G x Z latent (G = 16). The latent is clustered once into a balanced
binary tree (structure.build_tree). Then, for stage i = 0 .. S-1, the mean residual of each stage-i
cluster snaps to its nearest code; the code is broadcast to the cluster's positions, passed through the
stage's 3x3 conv Phi_i (h + phi_ratio * conv(h)) and added to the canvas. The final canvas is the
quantised latent that the decoder turns back into pixels. Pixels are in [-1, 1] inside (images.py
converts), latents are channel-last (B, N, Z) with N = G*G positions in row-major order.

Module names follow the authors' VQAE (without their Conv/Normalize wrapper level), so their ae.ckpt
converts by renaming keys (official.convert_official_ae).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
# DiffusionPipeline.from_pretrained finds a component's load method through this name in the component's module.
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401
from torch import nn

from .modeling import SpecModel
from .structure import build_tree, num_stages
from .transformer import cluster_mean


@dataclass
class TokenizerConfig:
    """Sizes of the autoencoder. The latent grid is resolution / unshuffle / 2^(len(channel_mult) - 1)."""

    resolution: int = 256
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 4, 4, 4)
    num_res_blocks: int = 2
    latent_channels: int = 32
    codebook_size: int = 4096
    grid_size: int = 16
    phi_ratio: float = 0.5  # Phi_i(h) = h + phi_ratio * conv_i(h)
    unshuffle: int = 1  # pixel-unshuffle stem factor (1 = the official full-resolution conv_in)
    beta: float = 0.25  # commitment weight of the VQ loss (training)

    def __post_init__(self):
        self.channel_mult = tuple(self.channel_mult)
        grid = self.resolution // self.unshuffle // 2 ** (len(self.channel_mult) - 1)
        if grid != self.grid_size or self.resolution % (self.unshuffle * 2 ** (len(self.channel_mult) - 1)):
            raise ValueError(f"resolution {self.resolution} with unshuffle {self.unshuffle} and "
                             f"{len(self.channel_mult) - 1} downsamplings gives grid {grid}, not {self.grid_size}")

    @property
    def num_stages(self) -> int:
        return num_stages(self.grid_size**2)


_EMOJI_F4 = TokenizerConfig(resolution=64, base_channels=64, channel_mult=(1, 2), num_res_blocks=2,
                            codebook_size=1024, unshuffle=2)
TOKENIZER_CONFIGS: dict[str, TokenizerConfig] = {
    # The authors' vq-f16-d32 (256 px -> 16x16x32, 4096 codes): 110,332,355 parameters.
    "official-f16": TokenizerConfig(),
    # The bundled model: 64 px -> pixel-unshuffle 2 -> 32x32 -> one downsampling -> 16x16x32 (f4).
    "emoji-f4": _EMOJI_F4,
    # The 8x8-grid alternative (7 stages; bench/bench_grid.py, model card): one more downsampling (f8).
    "emoji-f8": replace(_EMOJI_F4, channel_mult=(1, 2, 2), grid_size=8),
    # The bundled model's widths for your own 128 px and 256 px images: one more downsampling per doubling,
    # so the grid stays 16x16 (f8, f16). `nvg train tokenizer` picks them by the data's image size.
    "small-128": replace(_EMOJI_F4, resolution=128, channel_mult=(1, 2, 2)),
    "small-256": replace(_EMOJI_F4, resolution=256, channel_mult=(1, 2, 2, 2)),
    # For tests: 16 px -> 4x4x4, 16 codes (matches the "tiny" transformer).
    "tiny": TokenizerConfig(resolution=16, base_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                            latent_channels=4, codebook_size=16, grid_size=4, unshuffle=2),
}


# --------------------------------------------------------------------------------------------------
# Building blocks (taming-transformers style, no attention)
# --------------------------------------------------------------------------------------------------


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups (fewer for narrow test models), eps 1e-6 as in the official model."""
    return nn.GroupNorm(min(32, channels), channels, eps=1e-6)


class ResBlock(nn.Module):
    """GroupNorm -> swish -> conv3x3, twice, plus the input (a 1x1 conv when channels change)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return self.nin_shortcut(x) + self.conv2(F.silu(self.norm2(h)))


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then a stride-2 3x3 conv without padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level: res blocks and an optional resampling (named as in the official keys)."""

    def __init__(self, channels: list[int], resample: str | None):
        super().__init__()
        self.block = nn.ModuleList(ResBlock(a, b) for a, b in zip(channels[:-1], channels[1:]))
        if resample == "down":
            self.downsample = Downsample(channels[-1])
        elif resample == "up":
            self.upsample = Upsample(channels[-1])


class Mid(nn.Module):
    """Two res blocks at the lowest resolution (the official model has no attention here)."""

    def __init__(self, channels: int):
        super().__init__()
        self.block_1, self.block_2 = ResBlock(channels, channels), ResBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.block_1(x))


class Encoder(nn.Module):
    """Pixels (B, 3, R, R) -> latent grid (B, Z, G, G); an optional pixel-unshuffle stem makes it cheaper."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_mult]
        self.unshuffle = cfg.unshuffle
        self.conv_in = nn.Conv2d(3 * cfg.unshuffle**2, widths[0], 3, padding=1)
        cin, levels = widths[0], []
        for i, width in enumerate(widths):
            levels.append(Level([cin] + [width] * cfg.num_res_blocks, "down" if i < len(widths) - 1 else None))
            cin = width
        self.down = nn.ModuleList(levels)
        self.mid = Mid(widths[-1])
        self.norm_out = _norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(F.pixel_unshuffle(x, self.unshuffle))
        for level in self.down:
            for block in level.block:
                h = block(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    """Latent grid (B, Z, G, G) -> pixels (B, 3, R, R), mirroring the encoder (pixel-shuffle at the end)."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_mult]
        self.shuffle = cfg.unshuffle
        self.conv_in = nn.Conv2d(cfg.latent_channels, widths[-1], 3, padding=1)
        self.mid = Mid(widths[-1])
        # up[i] works at level i; they run from the deepest level to level 0.
        levels, cin = {}, widths[-1]
        for i in reversed(range(len(widths))):
            levels[i] = Level([cin] + [widths[i]] * (cfg.num_res_blocks + 1), "up" if i > 0 else None)
            cin = widths[i]
        self.up = nn.ModuleList(levels[i] for i in range(len(widths)))
        self.norm_out = _norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], 3 * cfg.unshuffle**2, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(h))), self.shuffle)


class Quantizer(nn.Module):
    """The codebook and the per-stage Phi convs."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.codebook_size, cfg.latent_channels)
        nn.init.uniform_(self.embedding.weight, -1.0 / cfg.codebook_size, 1.0 / cfg.codebook_size)
        self.quant_resi = nn.ModuleList(nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 3, padding=1)
                                        for _ in range(cfg.num_stages))


# --------------------------------------------------------------------------------------------------
# The tokenizer
# --------------------------------------------------------------------------------------------------


@dataclass
class TokenizerOutput:
    """Tokens of a batch. Cluster k of stage i is the positions whose stage-i label is k."""

    latent_BNC: torch.Tensor  # the continuous encoder output
    labels_BSN: torch.Tensor  # the structure tree
    ids: list[torch.Tensor]  # per stage i: (B, 2^i) code ids, one per cluster
    canvases_BSNC: torch.Tensor  # the canvas before each stage (zeros at stage 0)
    final_BNC: torch.Tensor  # the fully quantised latent (what the decoder reads)

    @property
    def codes_BSN(self) -> torch.Tensor:
        """At every position, the code of its stage-s cluster (the training objective's target form)."""
        return torch.stack([ids.gather(1, labels) for ids, labels in zip(self.ids, self.labels_BSN.unbind(1))], dim=1)


class NVGTokenizer(SpecModel):
    """Encoder, structure-guided residual quantiser and decoder (a diffusers model; sizes in `spec`)."""

    spec_class = TokenizerConfig

    @register_to_config
    def __init__(self, resolution: int, base_channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                 latent_channels: int, codebook_size: int, grid_size: int, phi_ratio: float, unshuffle: int,
                 beta: float):
        super().__init__()
        spec = self._build_spec()
        self.encoder = Encoder(spec)
        self.decoder = Decoder(spec)
        self.quantize = Quantizer(spec)

    def _grid(self, x_BNC: torch.Tensor) -> torch.Tensor:
        G = self.spec.grid_size
        return x_BNC.transpose(1, 2).unflatten(2, (G, G))

    def encode_latent(self, pixels_BCHW: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] -> continuous latent (B, N, Z).

        The pixels are made contiguous first: a channels_last input would run other CPU kernels (GroupNorm
        differs by ~1e-3 on the official AE), so the latent would depend on the caller's memory layout.
        """
        return self.encoder(pixels_BCHW.contiguous()).flatten(2).transpose(1, 2)

    def stage_term(self, ids_BN: torch.Tensor, stage: int) -> torch.Tensor:
        """Contribution of one stage to the canvas: Phi_stage(codebook[ids]) on the grid, (B, N, Z)."""
        h_BZGG = self._grid(self.quantize.embedding(ids_BN))
        phi = self.quantize.quant_resi[stage]
        out_BZGG = h_BZGG + self.spec.phi_ratio * phi(h_BZGG)
        return out_BZGG.flatten(2).transpose(1, 2)

    def nearest_codes(self, x_BKC: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared L2) for every vector."""
        codebook_VC = self.quantize.embedding.weight
        dist_BKV = x_BKC.pow(2).sum(-1, keepdim=True) + codebook_VC.pow(2).sum(-1) - 2 * x_BKC @ codebook_VC.T
        return dist_BKV.argmin(dim=-1)

    def tokenize(self, latent_BNC: torch.Tensor) -> TokenizerOutput:
        """Cluster the latent into a tree and quantise it stage by stage (reference section 1.7)."""
        latent_BNC = latent_BNC.float()
        labels_BSN = build_tree(latent_BNC)
        canvas_BNC = torch.zeros_like(latent_BNC)
        ids, canvases = [], []
        for stage in range(self.spec.num_stages):
            labels_BN = labels_BSN[:, stage]
            canvases.append(canvas_BNC)
            ids_BK = self.nearest_codes(cluster_mean(latent_BNC - canvas_BNC, labels_BN, 2**stage))
            canvas_BNC = canvas_BNC + self.stage_term(ids_BK.gather(1, labels_BN), stage)
            ids.append(ids_BK)
        return TokenizerOutput(latent_BNC, labels_BSN, ids, torch.stack(canvases, dim=1), canvas_BNC)

    def encode(self, pixels_BCHW: torch.Tensor) -> TokenizerOutput:
        """Pixels in [-1, 1] -> structure tree, codes per stage, canvases."""
        return self.tokenize(self.encode_latent(pixels_BCHW))

    def canvas_after_each_stage(self, codes_BSN: torch.Tensor) -> torch.Tensor:
        """(B, S, N, Z): the canvas after stages 0, 1, ..., from per-position codes (for previews)."""
        terms = [self.stage_term(codes_BSN[:, s], s) for s in range(codes_BSN.shape[1])]
        return torch.stack(terms, dim=1).cumsum(dim=1)

    def decode_ids(self, codes_BSN: torch.Tensor) -> torch.Tensor:
        """The quantised latent (B, N, Z) from per-position codes of all stages: the sum of stage terms."""
        return sum(self.stage_term(codes_BSN[:, s], s) for s in range(codes_BSN.shape[1]))

    def decode_latent(self, latent_BNC: torch.Tensor) -> torch.Tensor:
        """Latent (B, N, Z) -> pixels in [-1, 1]."""
        return self.decoder(self._grid(latent_BNC)).clamp(-1, 1)

    def forward(self, pixels_BCHW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: reconstruction (unclamped) and the VQ loss averaged over stages.

        The tree and the code choices carry no gradient; the codebook and Phi convs learn from
        ||f_hat_i - sg(f)||^2 and the encoder from beta * ||sg(f_hat_i) - f||^2 at every stage i;
        the decoder sees f_hat with a straight-through gradient to the encoder.
        """
        latent_BNC = self.encode_latent(pixels_BCHW)
        with torch.no_grad():
            tokens = self.tokenize(latent_BNC.detach())
        codes_BSN = tokens.codes_BSN
        f_hat_BNC = torch.zeros_like(latent_BNC)
        vq_loss = latent_BNC.new_zeros(())
        for stage in range(self.spec.num_stages):
            f_hat_BNC = f_hat_BNC + self.stage_term(codes_BSN[:, stage], stage)
            vq_loss = vq_loss + F.mse_loss(f_hat_BNC, latent_BNC.detach()) \
                + self.spec.beta * F.mse_loss(f_hat_BNC.detach(), latent_BNC)
        straight_BNC = latent_BNC + (f_hat_BNC - latent_BNC).detach()
        return self.decoder(self._grid(straight_BNC)), vq_loss / self.spec.num_stages


def parameter_counts(tokenizer: NVGTokenizer) -> dict[str, int]:
    """Parameters of the encoder, the decoder and the quantiser (codebook + Phi convs), and the total."""
    parts = {name: sum(p.numel() for p in getattr(tokenizer, name).parameters())
             for name in ("encoder", "decoder", "quantize")}
    parts["total"] = sum(parts.values())
    return parts
