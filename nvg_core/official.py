"""The authors' official NVG weights: their checkpoints read safely, converted, and fetched from the hub.

The authors' PyTorch Lightning checkpoints (ae.ckpt, d16/d20/d24.ckpt, or any other official-layout size:
the architecture is read from the tensor shapes and checked against recorded hyper-parameters) are read
with torch.load(weights_only=True) only, converted once into this project's diffusers model folder (see
pipeline.py), and never unpickled with code execution unless the caller explicitly allows it for a file
they trust. `load_pipeline` is NVGPipeline.from_pretrained that also accepts the authors' hub ids.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .pipeline import NVGPipeline
from .sampling import official_options
from .tokenizer import NVGTokenizer, TokenizerConfig
from .transformer import OFFICIAL_SCALE_FACTORS, NVGTransformer, TransformerConfig

OFFICIAL_LICENCE = "the authors' S-Lab License 1.0"
OFFICIAL_CLASS_NAMES = [f"imagenet_{i:03d}" for i in range(1000)]
# The authors' repo (d16), or REPO:VARIANT for an official-layout generator ckpt/VARIANT.ckpt beside ckpt/ae.ckpt.
OFFICIAL_HUB_ID = re.compile(r"yikaiwang/nvg|[\w.-]+/[\w.-]+:d\d+")


# --------------------------------------------------------------------------------------------------
# The authors' checkpoints
# --------------------------------------------------------------------------------------------------


def load_torch_checkpoint(path: str | os.PathLike, allow_unsafe: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """The 'state_dict' and the 'hyper_parameters' (empty if absent) of a .ckpt/.pt file, read with
    torch.load(weights_only=True) (memory-mapped for zip-format files, i.e. everything saved by torch >= 1.6).

    Lightning checkpoints can hold pickled objects that weights_only refuses. Then this raises an error
    that says what to do; allow_unsafe=True (only for a file you trust: unpickling can run code) retries
    with weights_only=False. Files that are not checkpoints at all get a different, plain error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:  # refused by the weights-only unpickler
        reason = next((line.strip() for line in str(error).splitlines() if "Unsupported" in line), str(error))
        if allow_unsafe:
            checkpoint = _load_unsafe(path)
        elif "Unsupported global" in reason:
            raise ValueError(
                f"{path} cannot be loaded safely (torch.load with weights_only=True failed: {reason}). It holds "
                "pickled Python objects besides tensors. If you trust the file, convert it once with "
                "allow_unsafe=True (CLI: --allow-unsafe-pickle); the converted folder is safetensors.") from error
        else:
            raise ValueError(f"{path} is not a readable PyTorch checkpoint (corrupt?): {reason}") from error
    except Exception as error:  # torch raises RuntimeError, EOFError, KeyError, ... for damaged files
        raise ValueError(f"{path} is not a readable PyTorch checkpoint (corrupt or truncated?): "
                         f"{type(error).__name__}: {error}") from error
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no state_dict")
    hyper_parameters = checkpoint.get("hyper_parameters") if state is not checkpoint else None
    return state, dict(hyper_parameters) if isinstance(hyper_parameters, Mapping) else {}


def _load_unsafe(path: Path) -> object:
    """torch.load with full unpickling, for a file the caller has declared trusted."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ValueError(f"{path} could not be unpickled either: {type(error).__name__}: {error}") from error


def _check_keys(converted: dict, module: nn.Module, what: str) -> None:
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    wrong = sorted(k for k in set(expected) & set(converted) if tuple(converted[k].shape) != expected[k])
    if missing or unexpected or wrong:
        raise ValueError(f"{what} does not match the official architecture: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}")


def _count(state: dict, prefix: str) -> int:
    """How many numbered children 'prefix.<i>.' the state has (0, 1, ... must all be present)."""
    indices = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"\.(\d+)\.", k))}
    if indices != set(range(len(indices))):
        raise ValueError(f"the numbered entries {prefix}.* are not 0..n-1: {sorted(indices)}")
    return len(indices)


def _shape(state: dict, key: str, what: str) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"{what} is not an official-layout checkpoint: it has no '{key}'")
    return tuple(state[key].shape)


def _find(tree: Mapping, name: str):
    """The first value of key `name` anywhere in nested hyper-parameter mappings (None if absent)."""
    if name in tree:
        return tree[name]
    for value in tree.values():
        if isinstance(value, Mapping) and (found := _find(value, name)) is not None:
            return found
    return None


def _check_hyper_parameters(hyper_parameters: Mapping, measured: dict, what: str) -> None:
    """Refuse a checkpoint whose recorded hyper-parameters contradict the sizes read from its tensors."""
    for name, value in measured.items():
        recorded = _find(hyper_parameters, name)
        if recorded is None:
            continue
        same = list(recorded) == list(value) if isinstance(value, (list, tuple)) else float(recorded) == float(value)
        if not same:
            raise ValueError(f"{what}: its hyper-parameter {name}={recorded!r} contradicts its tensors ({value!r})")


def _isqrt_grid(positions: int, what: str) -> int:
    grid = math.isqrt(positions)
    if grid * grid != positions or positions & (positions - 1):
        raise ValueError(f"{what} has {positions} latent positions: not a square grid of a power of two")
    return grid


def official_ae_config(state: dict[str, torch.Tensor], hyper_parameters: Mapping | None = None) -> TokenizerConfig:
    """The TokenizerConfig of a converted (renamed) official-layout AE state, read from its tensor shapes:
    widths and channel multipliers, res blocks per level, latent width, codebook size, and the grid
    (2^(stages - 1) positions, one Phi conv per stage); recorded hyper-parameters must agree."""
    what = "the AE checkpoint"
    base, in_channels = _shape(state, "encoder.conv_in.weight", what)[:2]
    if in_channels != 3:
        raise ValueError(f"{what} is not official-layout: its first conv reads {in_channels} channels, not RGB (3)")
    levels = max(1, _count(state, "encoder.down"))  # none at all: refused below for the missing level 0
    widths = [_shape(state, f"encoder.down.{i}.block.0.conv2.weight", what)[0] for i in range(levels)]
    if any(w % base for w in widths):
        raise ValueError(f"{what} has level widths {widths} that are not multiples of its base width {base}")
    codebook_size, latent_channels = _shape(state, "quantize.embedding.weight", what)
    stages = _count(state, "quantize.quant_resi")
    if stages < 2:
        raise ValueError(f"{what} is not official-layout: it has {stages} Phi convs (quantize.quant_resi), one per stage")
    grid = _isqrt_grid(2 ** (stages - 1), what)
    config = TokenizerConfig(resolution=grid * 2 ** (levels - 1), base_channels=base,
                             channel_mult=tuple(w // base for w in widths),
                             num_res_blocks=_count(state, "encoder.down.0.block"), latent_channels=latent_channels,
                             codebook_size=codebook_size, grid_size=grid)
    _check_hyper_parameters(hyper_parameters or {}, {
        "embed_dim": latent_channels, "n_embed": codebook_size, "base_ch": base, "encoder_ch_mult": config.channel_mult,
        "num_res_blocks": config.num_res_blocks, "downsampled_size": grid}, what)
    return config


def _short_floats(values_K: torch.Tensor) -> list[float]:
    """fp32 values as the shortest decimals that round-trip in fp32 (1.608, not 1.6080000400543213)."""
    return [float(str(np.float32(v))) for v in values_K.float().tolist()]


def official_generator_config(state: dict[str, torch.Tensor], hyper_parameters: Mapping | None = None) -> TransformerConfig:
    """The TransformerConfig of a converted official-layout generator state, read from its tensor shapes:
    depth, widths, heads (width / the q-norm's head dim), MLP ratio, codebook, classes, grid and the
    scale_factors buffer (the official constants if a 9-stage checkpoint lacks it); recorded
    hyper-parameters must agree."""
    what = "the generator checkpoint"
    _, positions, latent_channels = _shape(state, "content_start_embed", what)
    hidden = _shape(state, "content_embed.weight", what)[0]
    structure_hidden = _shape(state, "structure_embed.weight", what)[0]
    depth = _count(state, "content_blocks")
    head_dim = _shape(state, "content_blocks.0.norm.query_norm.scale", what)[0]
    structure_head_dim = _shape(state, "structure_blocks.0.norm.query_norm.scale", what)[0]
    mlp_width = _shape(state, "content_blocks.0.linear1.weight", what)[0] - 3 * hidden
    grid = _isqrt_grid(positions, what)
    scale_factors = state.get("scale_factors")
    if scale_factors is None and positions != 256:
        raise ValueError(f"{what} has no scale_factors buffer, and the official constants only fit a 16x16 grid")
    try:
        config = TransformerConfig(
            depth=depth, hidden=hidden, heads=hidden // head_dim, structure_hidden=structure_hidden,
            structure_heads=structure_hidden // structure_head_dim, mlp_ratio=mlp_width / hidden,
            latent_channels=latent_channels, codebook_size=_shape(state, "cls_head.linear.weight", what)[0],
            num_classes=_shape(state, "content_class_embed.weight", what)[0] - 1, grid_size=grid,
            scale_factors=OFFICIAL_SCALE_FACTORS if scale_factors is None else _short_floats(scale_factors))
    except ValueError as error:
        raise ValueError(f"{what} is not official-layout: {error}") from error
    _check_hyper_parameters(hyper_parameters or {}, {
        "depth": depth, "vocab_size": config.codebook_size, "mlp_ratio": config.mlp_ratio,
        "img_input_channel": latent_channels, "num_classes": config.num_classes, "head_dim": head_dim,
        "structure_down_factor": hidden // structure_hidden,
        "num_tokens": [2**i for i in range(config.num_stages)]}, what)
    return config


def convert_official_ae(state: dict[str, torch.Tensor],
                        hyper_parameters: Mapping | None = None) -> tuple[dict[str, torch.Tensor], TokenizerConfig]:
    """An official-layout ae.ckpt state_dict -> (NVGTokenizer state_dict, its config), any size.

    Takes the non-EMA weights (as the authors' generator does): drops ema_model.*, loss.* and
    total_visited_codes, and removes the Conv/Normalize wrapper level ('conv_in.conv.weight' ->
    'conv_in.weight'). The architecture is read from the checkpoint (official_ae_config); anything that
    does not fit it exactly is refused with the offending keys.
    """
    converted = {re.sub(r"\.(conv|norm)\.(weight|bias)$", r".\2", k): v for k, v in state.items()
                 if not k.startswith(("ema_model.", "loss.")) and k != "total_visited_codes"}
    config = official_ae_config(converted, hyper_parameters)
    with torch.device("meta"):
        _check_keys(converted, NVGTokenizer.from_spec(config), "the AE checkpoint")
    return converted, config


def convert_official_generator(state: dict[str, torch.Tensor], ema: bool = True, hyper_parameters: Mapping | None = None,
                               ) -> tuple[dict[str, torch.Tensor], TransformerConfig]:
    """An official-layout generator state_dict (d16/d20/d24.ckpt or any other size) -> (NVGTransformer
    state_dict, its config).

    Takes the EMA weights (ema_model.nvgformer.*) by default, else the raw ones; drops the AE, the REPA
    encoder and projector and the rope_ids buffer; the scale_factors buffer goes into the config. The
    architecture is read from the checkpoint (official_generator_config); anything else is refused.
    """
    prefix = "ema_model.nvgformer." if ema else "nvgformer."
    converted = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not converted:
        raise ValueError(f"no '{prefix}*' keys in the generator checkpoint" + (" (try ema=False)" if ema else ""))
    config = official_generator_config(converted, hyper_parameters)
    converted = {k: v for k, v in converted.items() if not k.startswith("projector.") and k not in ("rope_ids", "scale_factors")}
    with torch.device("meta"):
        _check_keys(converted, NVGTransformer.from_spec(config), "the generator checkpoint")
    return converted, config


def convert_official(ae_path: str | os.PathLike, generator_path: str | os.PathLike, out: str | os.PathLike,
                     ema: bool = True, allow_unsafe: bool = False) -> Path:
    """Convert an official-layout ae.ckpt + generator .ckpt into a model folder (NVGPipeline.save_pretrained:
    the diffusers layout, ready for push_to_hub). Written to OUT.partial first, then renamed."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} already exists and is not empty; choose a new folder")
    ae_state, ae_config = convert_official_ae(*load_torch_checkpoint(ae_path, allow_unsafe))
    state, hyper_parameters = load_torch_checkpoint(generator_path, allow_unsafe)
    generator_state, config = convert_official_generator(state, ema, hyper_parameters)
    for field in ("latent_channels", "codebook_size", "grid_size"):
        if getattr(ae_config, field) != getattr(config, field):
            raise ValueError(f"the AE and the generator do not fit together: {field} {getattr(ae_config, field)} "
                             f"vs {getattr(config, field)}")
    tokenizer, transformer = NVGTokenizer.from_spec(ae_config), NVGTransformer.from_spec(config)
    tokenizer.load_state_dict(ae_state)
    transformer.load_state_dict(generator_state)
    class_names = OFFICIAL_CLASS_NAMES if config.num_classes == 1000 else [f"class_{i}" for i in range(config.num_classes)]
    authors = official_options(transformer.spec.num_stages)  # the authors' settings, for free and imposed runs
    pipe = NVGPipeline(tokenizer, transformer, class_names, default_options=authors, transfer_options=authors,
                       name=f"nvg-official-d{config.depth} ({OFFICIAL_LICENCE})")
    tmp = out.with_name(f".{out.name}.partial")
    pipe.save_pretrained(tmp)
    os.replace(tmp, out)
    return out


def fetch_official(hub_id: str) -> Path:
    """Download the authors' checkpoints from the hub and convert them once (cached beside the hub cache).

    hub_id: 'yikaiwang/nvg' (d16) or 'yikaiwang/nvg:d20' / ':d24'. With HF_HUB_OFFLINE=1 only the cache
    is used; a clear error says what is missing.
    """
    from huggingface_hub import constants, hf_hub_download
    repo, _, variant = hub_id.partition(":")
    variant = variant or "d16"
    out = Path(constants.HF_HUB_CACHE).parent / "nvg-studio" / f"{repo.replace('/', '--')}-{variant}"
    if (out / "model_index.json").is_file():
        return out
    try:
        ae = hf_hub_download(repo, "ckpt/ae.ckpt")
        generator = hf_hub_download(repo, f"ckpt/{variant}.ckpt")
    except Exception as error:
        raise FileNotFoundError(
            f"could not get ckpt/ae.ckpt and ckpt/{variant}.ckpt of {repo} from the Hugging Face hub ({type(error).__name__}: "
            f"{error}). The hub is unreachable or HF_HUB_OFFLINE=1 is set and the files are not cached. Download them "
            f"where the hub is reachable (they come under {OFFICIAL_LICENCE}) and run "
            "`nvg convert --ae ae.ckpt --generator d16.ckpt --out DIR`, then pass DIR.") from error
    return convert_official(ae, generator, out, allow_unsafe=False)


def load_pipeline(source: str | os.PathLike | None = None, device: str | torch.device | None = None,
                  **kwargs) -> NVGPipeline:
    """NVGPipeline.from_pretrained (a folder, a diffusers hub repo, or the bundled model / $NVG_MODEL),
    where `source` may also be one of the authors' hub ids (OFFICIAL_HUB_ID), fetched and converted once."""
    source = source or os.environ.get("NVG_MODEL")
    if isinstance(source, str) and OFFICIAL_HUB_ID.fullmatch(source):
        source = fetch_official(source)
    return NVGPipeline.from_pretrained(source, device=device, **kwargs)
