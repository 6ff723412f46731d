"""Tiny official-layout checkpoints for tests: the authors' key names and Lightning file layout, small shapes.

The key names come from this project's modules renamed the way the authors' modules are built (Conv and
Normalize wrapper levels in the AE, the `nvgformer.` prefix, its EMA copy and the extra buffers, projector,
AE and REPA entries in the generator); tests check the renaming against the official key lists. The
values do not depend on module init: every tensor is drawn, in sorted key order, from its own seeded
generator, so pinned outputs change only when the conversion or the sampler does.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from nvg_core.tokenizer import NVGTokenizer, TokenizerConfig
from nvg_core.transformer import NVGTransformer, TransformerConfig

# 8 px -> 4x4 grid (5 stages), 4 latent channels, 16 codes; GroupNorm 32 as in the official AE.
TINY_AE = TokenizerConfig(resolution=8, base_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                          latent_channels=4, codebook_size=16, grid_size=4)
SCALE_FACTORS = (1.0, 3.0, 2.5, 2.0, 1.5, 1.25)


def tiny_generator_config(depth: int = 2) -> TransformerConfig:
    """The authors' size rule (width 64 * depth, head dim 64, structure branch at half width) on the tiny grid."""
    return TransformerConfig(depth=depth, hidden=64 * depth, heads=depth, latent_channels=4, codebook_size=16,
                             num_classes=4, grid_size=4, scale_factors=SCALE_FACTORS)


def official_ae_keys(module: NVGTokenizer) -> dict[str, tuple[int, ...]]:
    """Official ae.ckpt names and shapes of a tokenizer: convs and GroupNorms get their wrapper level."""
    names = {}
    for prefix, child in module.named_modules():
        wrapper = ".norm" if isinstance(child, nn.GroupNorm) else ".conv" if (
            isinstance(child, nn.Conv2d) and not prefix.startswith("quantize.")) else ""
        for name, tensor in child.named_parameters(recurse=False):
            names[f"{prefix}{wrapper}.{name}"] = tuple(tensor.shape)
    return names


def official_generator_keys(module: NVGTransformer) -> dict[str, tuple[int, ...]]:
    """Official nvgformer.* names and shapes of a transformer, with the rope_ids and scale_factors buffers
    and the REPA projector."""
    cfg = module.spec
    names = {f"nvgformer.{k}": tuple(v.shape) for k, v in module.state_dict().items()}
    names["nvgformer.rope_ids"] = (1, cfg.num_positions + 1, 3 + cfg.num_bits)
    names["nvgformer.scale_factors"] = (cfg.num_stages + 1,)
    for i, (rows, cols) in zip((0, 2, 4), ((2048, cfg.hidden), (2048, 2048), (768, 2048))):
        names[f"nvgformer.projector.{i}.weight"], names[f"nvgformer.projector.{i}.bias"] = (rows, cols), (rows,)
    return names


def random_values(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Seeded values per key: weights ~ N(0, 1/fan_in), norm scales ~ 1 + N(0, 0.01), other vectors ~ N(0, 0.02^2)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key in sorted(shapes):
        shape = shapes[key]
        noise = torch.randn(shape, generator=generator)
        if len(shape) > 1:
            state[key] = noise / max(1, torch.tensor(shape[1:]).prod().item()) ** 0.5
        elif "norm" in key:
            state[key] = 1 + 0.1 * noise
        else:
            state[key] = 0.02 * noise
    return state


def save_lightning(path: Path, state: dict[str, torch.Tensor], hyper_parameters: dict) -> Path:
    """A Lightning-style checkpoint dict, as torch.save writes it."""
    torch.save({"epoch": 1, "global_step": 10, "pytorch-lightning_version": "2.4.0", "state_dict": state,
                "hyper_parameters": hyper_parameters}, path)
    return path


def write_tiny_ae(path: Path, seed: int = 0) -> Path:
    """ae.ckpt: raw weights, an EMA copy, loss.* entries and total_visited_codes, like the authors' file."""
    with torch.device("meta"):
        shapes = official_ae_keys(NVGTokenizer.from_spec(TINY_AE))
    state = random_values(shapes, seed)
    state.update({f"ema_model.{k}": v for k, v in random_values(shapes, seed + 1).items()})
    state["loss.discriminator.head.weight"] = torch.ones(3)
    state["total_visited_codes"] = torch.zeros(TINY_AE.num_stages, TINY_AE.codebook_size, dtype=torch.long)
    return save_lightning(path, state, {"embed_dim": 4, "n_embed": 16, "base_ch": 32, "encoder_ch_mult": [1, 2],
                                        "num_res_blocks": 1, "downsampled_size": 4})


def write_tiny_generator(path: Path, depth: int = 2, seed: int = 10) -> Path:
    """dN.ckpt: nvgformer.* (raw) and ema_model.nvgformer.* (EMA) plus the AE and REPA entries the authors store."""
    cfg = tiny_generator_config(depth)
    with torch.device("meta"):
        shapes = official_generator_keys(NVGTransformer.from_spec(cfg))
    state = {}
    for prefix, values in (("", random_values(shapes, seed)), ("ema_model.", random_values(shapes, seed + 1))):
        values["nvgformer.scale_factors"] = torch.tensor(SCALE_FACTORS)
        state.update({prefix + k: v for k, v in values.items()})
    state["first_stage_model.encoder.conv_in.conv.weight"] = torch.zeros(32, 3, 3, 3)
    state["repa_encoder.pos_embed"] = torch.zeros(1, 17, 8)
    hyper_parameters = {"cfg": True, "use_ema": True, "nvgformer_config": {"params": {
        "vocab_size": 16, "num_tokens": [1, 2, 4, 8, 16], "mlp_ratio": 4, "depth": depth, "structure_down_factor": 2}}}
    return save_lightning(path, state, hyper_parameters)
