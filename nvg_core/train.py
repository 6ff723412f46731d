"""Training loops for the bundled model: the tokenizer, then the generator on the tokenizer's codes.

Both train on the emoji dataset minus its held-out emoji (data.emoji.split_by_emoji), so the held-out
figures of `nvg eval` are honest. Both loops are device-agnostic (CUDA when present, else MPS or CPU), seeded, keep an EMA copy, log losses
as JSON lines, save a model folder every `save_every` steps and at the end, and resume from a folder.
`nvg train tokenizer ...` and `nvg train generator ...` call them; `--help` lists the knobs.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .data.emoji import CLASSES, NO_FLIP_CLASSES, load_emoji_dataset, split_by_emoji
from .objective import canvas_scale_factors, nvg_loss
from .tokenizer import TOKENIZER_CONFIGS, NVGTokenizer
from .transformer import TRANSFORMER_CONFIGS, NVGTransformer, cluster_mean


def _device(name: str | None) -> torch.device:
    from .pipeline import default_device
    return torch.device(name) if name else default_device()


def _lr(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - decay)


def _optimise(opt: torch.optim.Optimizer, model: torch.nn.Module, ema: torch.nn.Module, loss: torch.Tensor,
              step: int, args) -> None:
    """One AdamW step at the scheduled learning rate (gradients clipped to norm 1), then the EMA update."""
    for group in opt.param_groups:
        group["lr"] = _lr(step, args.steps, args.lr, args.warmup) * group.get("lr_mult", 1.0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    _ema_update(ema, model, args.ema if step > args.warmup else 0.0)


def _save_or_stop(step: int, args, deadline: float, ema: torch.nn.Module, model: torch.nn.Module, name: str,
                  dtype: torch.dtype | None = None) -> bool:
    """Save the EMA weights to OUT/NAME (and the raw ones to OUT/raw/NAME) when due, as diffusers models
    (config.json + safetensors; floating weights stored in `dtype` if given); True when --max-minutes is reached."""
    out_of_time = time.time() > deadline
    if (step + 1) % args.save_every == 0 or step == args.steps - 1 or out_of_time:
        for module, folder in ((ema, Path(args.out) / name), (model, Path(args.out) / "raw" / name)):
            (copy.deepcopy(module).to(dtype) if dtype else module).save_pretrained(folder)
    if out_of_time:
        print(f"stopping at step {step + 1}: --max-minutes reached", file=sys.stderr)
    return out_of_time


class Logger:
    """Prints a progress line and appends JSON lines to a log file."""

    def __init__(self, path: Path, total: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file, self.total, self.start = open(path, "a"), total, time.time()

    def __call__(self, step: int, **values: float) -> None:
        record = {"step": step, "time_s": round(time.time() - self.start, 1), **{k: round(float(v), 5) for k, v in values.items()}}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        rate = (step + 1) / max(1e-9, time.time() - self.start)
        print(f"[{step + 1}/{self.total}] " + " ".join(f"{k} {v:.4g}" for k, v in values.items())
              + f" | {rate:.2f} steps/s, eta {(self.total - step - 1) / rate / 60:.1f} min", file=sys.stderr, flush=True)


def _flip_ok(labels: np.ndarray) -> np.ndarray:
    """Images that may be mirrored: labelled, and not of a class where direction matters."""
    no_flip = [CLASSES.index(c) for c in NO_FLIP_CLASSES]
    return (labels >= 0) & ~np.isin(labels, no_flip)


def _train_indices(emoji_ids: np.ndarray) -> np.ndarray:
    """Indices of the training split (every emoji not held out), refusing an empty one."""
    train_idx, _ = split_by_emoji(emoji_ids)
    if len(train_idx) == 0:
        raise ValueError("the dataset has no training images: every emoji in it is in the held-out split")
    return train_idx


def _pixels(images_BHWC_uint8: torch.Tensor) -> torch.Tensor:
    return images_BHWC_uint8.permute(0, 3, 1, 2).float() / 127.5 - 1


# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------


def train_tokenizer(args) -> None:
    """Reconstruction (L1 + MSE) + VQ loss on every image; dead codes are re-seeded from residuals."""
    device = _device(args.device)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    data = load_emoji_dataset(args.data)
    train_idx = _train_indices(data.emoji)
    images = torch.from_numpy(data.images[train_idx]).to(device)
    flip_ok = torch.from_numpy(_flip_ok(data.label[train_idx])).to(device)
    out = Path(args.out)
    if args.resume:
        model = NVGTokenizer.from_pretrained(args.resume, subfolder="tokenizer", dtype=torch.float32)
    else:
        model = NVGTokenizer.from_spec(TOKENIZER_CONFIGS[args.config])
    model.to(device).train()
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    usage_V = torch.zeros(model.config.codebook_size, device=device)
    log = Logger(out / "train_log.jsonl", args.steps)
    deadline = time.time() + args.max_minutes * 60
    for step in range(args.steps):
        idx_B = torch.randint(len(images), (args.batch_size,), generator=generator).to(device)
        flip_B = (torch.rand(args.batch_size, generator=generator).to(device) < 0.5) & flip_ok[idx_B]
        x_BCHW = _pixels(images[idx_B])
        x_BCHW = torch.where(flip_B[:, None, None, None], x_BCHW.flip(-1), x_BCHW)
        recon_BCHW, vq_loss = model(x_BCHW)
        l1, mse = (recon_BCHW - x_BCHW).abs().mean(), (recon_BCHW - x_BCHW).pow(2).mean()
        loss = l1 + mse + vq_loss
        _optimise(opt, model, ema, loss, step, args)
        if step % args.refresh_every == 0 or step == args.steps - 1:
            usage_V = _refresh_dead_codes(model, x_BCHW, usage_V, generator, reseed=step < args.steps * 0.8)
        if step % args.log_every == 0 or step == args.steps - 1:
            log(step, loss=loss.item(), l1=l1.item(), psnr=-10 * math.log10(max(mse.item() / 4, 1e-10)),
                vq=vq_loss.item(), lr=opt.param_groups[0]["lr"])
        if _save_or_stop(step, args, deadline, ema, model, "tokenizer"):
            break


@torch.no_grad()
def _refresh_dead_codes(model: NVGTokenizer, x_BCHW: torch.Tensor, usage_V: torch.Tensor,
                        generator: torch.Generator, reseed: bool) -> torch.Tensor:
    """Count code use on a batch; codes unused since the last refresh get random cluster residuals."""
    tokens = model.encode(x_BCHW)
    residuals = []
    for stage, ids_BK in enumerate(tokens.ids):
        usage_V += torch.bincount(ids_BK.flatten(), minlength=len(usage_V))
        mean_BKC = cluster_mean(tokens.latent_BNC - tokens.canvases_BSNC[:, stage], tokens.labels_BSN[:, stage], 2**stage)
        residuals.append(mean_BKC.flatten(0, 1))
    dead_V = usage_V == 0
    if reseed and dead_V.any():
        pool_RC = torch.cat(residuals)
        pick = torch.randint(len(pool_RC), (int(dead_V.sum()),), generator=generator).to(pool_RC.device)
        model.quantize.embedding.weight[dead_V] = pool_RC[pick]
    return torch.zeros_like(usage_V)


# --------------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def tokenize_dataset(tokenizer: NVGTokenizer, images_NHWC: np.ndarray, labels_N: np.ndarray, device: torch.device,
                     batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Teacher-forcing targets for every labelled image (and its mirror where flips are allowed)."""
    keep = labels_N >= 0
    images, labels = images_NHWC[keep], labels_N[keep]
    flip = _flip_ok(labels)
    images = np.concatenate([images, images[flip][:, :, ::-1]])
    labels = np.concatenate([labels, labels[flip]])
    parts = {"labels_BSN": [], "codes_BSN": [], "canvases_BSNC": [], "final_BNC": []}
    for start in range(0, len(images), batch_size):
        x = _pixels(torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device))
        tokens = tokenizer.encode(x)
        parts["labels_BSN"].append(tokens.labels_BSN)
        parts["codes_BSN"].append(tokens.codes_BSN)
        parts["canvases_BSNC"].append(tokens.canvases_BSNC)
        parts["final_BNC"].append(tokens.final_BNC)
    out = {k: torch.cat(v) for k, v in parts.items()}
    out["class_B"] = torch.from_numpy(labels.astype(np.int64)).to(device)
    return out


def with_config(model: NVGTransformer, **changes) -> NVGTransformer:
    """The same weights in a model whose config has `changes`; only parameters the changes add may be new
    (they keep their initialisation, e.g. the zero map of structure_class_proj)."""
    new = NVGTransformer.from_spec(dataclasses.replace(model.spec, **changes))
    added = {name for name, _ in new.named_parameters()} - {name for name, _ in model.named_parameters()}
    try:
        missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    except RuntimeError as error:  # shapes differ
        raise ValueError(f"config change {changes} does not keep the weights: {error}") from None
    if unexpected or set(missing) - added:
        raise ValueError(f"config change {changes} does not keep the weights: missing {missing}, unexpected {unexpected}")
    return new


def cached_targets(tokenizer: NVGTokenizer, tokenizer_folder: Path, data_path: Path, images_NHWC: np.ndarray,
                   labels_N: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    """tokenize_dataset, cached beside the dataset under a key of the tokenizer weights and the data file
    (tokenizing the whole set takes minutes on a 2-core CPU; every training run needs it)."""
    digest = hashlib.sha256((Path(tokenizer_folder) / "tokenizer" / "diffusion_pytorch_model.safetensors").read_bytes())
    digest.update(Path(data_path).read_bytes())
    cache = Path(data_path).with_name(f"{Path(data_path).stem}.targets-{digest.hexdigest()[:16]}.pt")
    if cache.is_file():
        return {k: v.to(device) for k, v in torch.load(cache, weights_only=True).items()}
    targets = tokenize_dataset(tokenizer, images_NHWC, labels_N, device)
    torch.save({k: v.cpu() for k, v in targets.items()}, cache)
    return targets


def train_generator(args) -> None:
    """The NVG objective on the tokenizer's codes, class-balanced sampling, k random stages per image."""
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    device = _device(args.device)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    out = Path(args.out)
    tokenizer = NVGTokenizer.from_pretrained(args.tokenizer, subfolder="tokenizer", dtype=torch.float32).to(device)
    model = NVGTransformer.from_pretrained(args.resume, subfolder="transformer", dtype=torch.float32) \
        if args.resume else None
    if model is not None and args.structure_class_proj and not model.spec.use_structure_class_proj:
        model = with_config(model, use_structure_class_proj=True)
    grid = model.spec.grid_size if model is not None else TRANSFORMER_CONFIGS[args.config].grid_size
    if grid != tokenizer.spec.grid_size:
        raise ValueError(f"the generator's grid is {grid}x{grid} but the tokenizer in {args.tokenizer} makes "
                         f"{tokenizer.config.grid_size}x{tokenizer.config.grid_size} latents: pick matching configs "
                         "(emoji-f4 with emoji-s, emoji-f8 with emoji-s8)")
    data = load_emoji_dataset(args.data)
    train_idx = _train_indices(data.emoji)
    targets = cached_targets(tokenizer, args.tokenizer, args.data, data.images[train_idx], data.label[train_idx], device)
    if model is None:
        scales = canvas_scale_factors(targets["canvases_BSNC"][:1024], targets["final_BNC"][:1024])
        model = NVGTransformer.from_spec(dataclasses.replace(TRANSFORMER_CONFIGS[args.config], scale_factors=scales,
                                                             use_structure_class_proj=args.structure_class_proj))
    model.to(device).train()
    ema = copy.deepcopy(model).eval()
    train_content = args.branch == "all"
    for name, p in model.named_parameters():
        p.requires_grad_(train_content or name.startswith("structure_"))
    groups = {}  # (weight decay, lr multiplier) -> parameters; the class path may learn faster
    for name, p in model.named_parameters():
        if p.requires_grad:
            mult = args.class_lr_mult if "class_embed" in name or name.startswith("structure_class_proj") else 1.0
            groups.setdefault((0.05 if p.ndim >= 2 else 0.0, mult), []).append(p)
    opt = torch.optim.AdamW([{"params": ps, "weight_decay": wd, "lr_mult": mult} for (wd, mult), ps in groups.items()],
                            lr=args.lr, betas=(0.9, 0.95))
    order_N = targets["class_B"].argsort()
    count_C = torch.bincount(targets["class_B"], minlength=model.config.num_classes)
    offset_C = count_C.cumsum(0) - count_C
    log = Logger(out / "train_log.jsonl", args.steps)
    deadline = time.time() + args.max_minutes * 60
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16 and device.type == "cuda")
    for step in range(args.steps):
        class_B = torch.randint(model.config.num_classes, (args.batch_size,), generator=generator).to(device)
        u_B = torch.rand(args.batch_size, generator=generator).to(device)  # classes evenly, then an image of it
        pick_B = order_N[offset_C[class_B] + (u_B * count_C[class_B]).long()]
        with autocast:
            loss, parts = nvg_loss(model, targets["canvases_BSNC"][pick_B], targets["final_BNC"][pick_B],
                                   targets["labels_BSN"][pick_B], targets["codes_BSN"][pick_B],
                                   targets["class_B"][pick_B], generator, args.stages_per_sample or None,
                                   content=train_content, structure_stage_weights=args.structure_stage_weights,
                                   split_weight=args.split_weight)
        _optimise(opt, model, ema, loss, step, args)
        if step % args.log_every == 0 or step == args.steps - 1:
            log(step, **{k: v.item() for k, v in parts.items()}, lr=opt.param_groups[0]["lr"])
        if _save_or_stop(step, args, deadline, ema, model, "transformer", torch.float16 if args.half_weights else None):
            break
