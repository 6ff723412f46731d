"""Weights on disk: this project's folder format, the authors' checkpoints, and the hub.

Folder format: per component NAME (tokenizer, transformer, evaluator) a NAME_config.json (the config
dataclass as JSON, plus the class name) and NAME.safetensors; files are written to a temporary name and
renamed, so an interrupted save leaves no half-written file. The authors' PyTorch Lightning checkpoints
(ae.ckpt, d16/d20/d24.ckpt) are read with torch.load(weights_only=True) only, converted once, and never
unpickled with code execution unless the caller explicitly allows it for a file they trust.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .tokenizer import TOKENIZER_CONFIGS, NVGTokenizer, TokenizerConfig
from .transformer import TRANSFORMER_CONFIGS, NVGTransformer, TransformerConfig

COMPONENTS: dict[str, tuple[type[nn.Module], type]] = {
    "NVGTokenizer": (NVGTokenizer, TokenizerConfig),
    "NVGTransformer": (NVGTransformer, TransformerConfig),
}
OFFICIAL_LICENCE = "the authors' S-Lab License 1.0"
OFFICIAL_CLASS_NAMES = [f"imagenet_{i:03d}" for i in range(1000)]


def register_component(module_class: type[nn.Module], config_class: type) -> None:
    """Let load_component rebuild another module type (e.g. the evaluator) from its folder files."""
    COMPONENTS[module_class.__name__] = (module_class, config_class)


# --------------------------------------------------------------------------------------------------
# This project's folder format
# --------------------------------------------------------------------------------------------------


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file through a temporary file and a rename."""
    _atomic(path, lambda tmp: Path(tmp).write_text(text))


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; weights and configs are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_component(module: nn.Module, folder: str | os.PathLike, name: str, dtype: torch.dtype | None = None) -> None:
    """Save module.config and the weights (optionally cast, e.g. to bfloat16 for storage)."""
    folder = Path(folder)
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in module.state_dict().items()}
    config = {"_class": type(module).__name__, **dataclasses.asdict(module.config)}
    _atomic(folder / f"{name}.safetensors", lambda tmp: save_file(state, tmp))
    write_text_atomic(folder / f"{name}_config.json", json.dumps(config, indent=1))


def load_component(folder: str | os.PathLike, name: str) -> nn.Module:
    """Rebuild a saved module in fp32 on the CPU; clear errors for missing or corrupt files."""
    folder = Path(folder)
    config_path, weights_path = folder / f"{name}_config.json", folder / f"{name}.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {folder} is not a complete model folder")
    try:
        config = json.loads(config_path.read_text())
        module_class, config_class = COMPONENTS[config.pop("_class")]
        module = module_class(config_class(**config))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{config_path} is not a valid component config: {type(error).__name__}: {error}") from error
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{weights_path} is not a readable safetensors file ({error}); re-download or re-save it") from error
    try:
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as error:
        raise ValueError(f"{weights_path} does not fit {config_path.name}: {error}") from error
    return module


# --------------------------------------------------------------------------------------------------
# The authors' checkpoints
# --------------------------------------------------------------------------------------------------


def load_torch_checkpoint(path: str | os.PathLike, allow_unsafe: bool = False) -> dict[str, torch.Tensor]:
    """The 'state_dict' of a .ckpt/.pt file, read with torch.load(weights_only=True) (memory-mapped for
    zip-format files, i.e. everything saved by torch >= 1.6).

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
    return state


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


def convert_official_ae(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ae.ckpt state_dict -> NVGTokenizer state_dict (non-EMA weights, as the authors' generator uses).

    Drops ema_model.*, loss.* and total_visited_codes, and removes the Conv/Normalize wrapper level
    ('conv_in.conv.weight' -> 'conv_in.weight').
    """
    converted = {re.sub(r"\.(conv|norm)\.(weight|bias)$", r".\2", k): v for k, v in state.items()
                 if not k.startswith(("ema_model.", "loss.")) and k != "total_visited_codes"}
    with torch.device("meta"):
        _check_keys(converted, NVGTokenizer(TOKENIZER_CONFIGS["official-f16"]), "ae.ckpt")
    return converted


def convert_official_generator(state: dict[str, torch.Tensor], ema: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """d16/d20/d24.ckpt state_dict -> (NVGTransformer state_dict, config name).

    Takes the EMA weights (ema_model.nvgformer.*) by default, else the raw ones; drops the AE, the REPA
    encoder and projector and the rope_ids buffer; checks the scale_factors buffer against the config.
    """
    prefix = "ema_model.nvgformer." if ema else "nvgformer."
    converted = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not converted:
        raise ValueError(f"no '{prefix}*' keys in the generator checkpoint" + (" (try ema=False)" if ema else ""))
    scale_factors = converted.pop("scale_factors", None)
    converted = {k: v for k, v in converted.items() if not k.startswith("projector.") and k != "rope_ids"}
    depth = 1 + max(int(k.split(".")[1]) for k in converted if k.startswith("content_blocks."))
    name = f"official-d{depth}"
    if name not in TRANSFORMER_CONFIGS:
        raise ValueError(f"a generator of depth {depth} is not one of the official d16/d20/d24")
    config = TRANSFORMER_CONFIGS[name]
    if scale_factors is not None and not torch.allclose(scale_factors.float(), torch.tensor(config.scale_factors), atol=1e-3):
        raise ValueError(f"the checkpoint's scale_factors {scale_factors.tolist()} differ from {config.scale_factors}")
    with torch.device("meta"):
        _check_keys(converted, NVGTransformer(config), "the generator checkpoint")
    return converted, name


def convert_official(ae_path: str | os.PathLike, generator_path: str | os.PathLike, out: str | os.PathLike,
                     ema: bool = True, allow_unsafe: bool = False) -> Path:
    """Convert ae.ckpt + dNN.ckpt into a model folder that NVGPipeline.from_pretrained loads."""
    from .pipeline import NVGPipeline
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} already exists and is not empty; choose a new folder")
    tokenizer = NVGTokenizer(TOKENIZER_CONFIGS["official-f16"])
    tokenizer.load_state_dict(convert_official_ae(load_torch_checkpoint(ae_path, allow_unsafe)))
    generator_state, name = convert_official_generator(load_torch_checkpoint(generator_path, allow_unsafe), ema)
    transformer = NVGTransformer(TRANSFORMER_CONFIGS[name])
    transformer.load_state_dict(generator_state)
    pipe = NVGPipeline(tokenizer, transformer, OFFICIAL_CLASS_NAMES, device="cpu", default_flow_steps=25,
                       name=f"nvg-{name} ({OFFICIAL_LICENCE})")
    tmp = out.with_name(f".{out.name}.partial")
    pipe.save_pretrained(tmp)
    os.replace(tmp, out)
    return out


def fetch_official(hub_id: str) -> Path:
    """Download the authors' checkpoints from the hub and convert them once (cached).

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
