"""Training loops: the tokenizer, then the generator on the tokenizer's codes, on emoji-32 or your own folder.

`nvg train tokenizer|generator --data DATA --out OUT` (DATA: an emoji .npz, or a folder dataset from
`nvg data folder`; data.load_training_set). The emoji set trains on its split without the held-out emoji,
so `nvg eval`'s held-out figures stay honest. Both loops run in one process or under torchrun in many
(nvg_core.distributed: --batch-size is the global batch, split among the processes), keep an EMA copy,
log losses as JSON lines, checkpoint and resume (nvg_core.trainer) and save their folders every --save-every
steps and at the end. The generator's folder is a complete model folder (tokenizer, transformer, class
names, model card) that NVGPipeline.from_pretrained and `python app.py --model OUT` open.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shlex
import sys
from datetime import date
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from .data import TrainingSet, load_training_set
from .distributed import Processes, in_process_group
from .objective import canvas_scale_factors, nvg_loss
from .tokenizer import TOKENIZER_CONFIGS, NVGTokenizer, TokenizerConfig
from .trainer import Run, ema_update, lr_at
from .transformer import TRANSFORMER_CONFIGS, NVGTransformer, TransformerConfig, cluster_mean

TOKENIZER_FOR_RESOLUTION = {64: "emoji-f4", 128: "small-128", 256: "small-256"}  # the default --config by image size


def optimise(opt: torch.optim.Optimizer, model: torch.nn.Module, ema: torch.nn.Module, loss: torch.Tensor,
             step: int, args) -> None:
    """One AdamW step at the scheduled learning rate (gradients clipped to norm 1), then the EMA update."""
    for group in opt.param_groups:
        group["lr"] = lr_at(step, args.steps, args.lr, args.warmup) * group.get("lr_mult", 1.0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    ema_update(ema, model, args.ema if step > args.warmup else 0.0)


def _save(module: torch.nn.Module, folder: Path, dtype: torch.dtype | None = None) -> None:
    """A network as a diffusers model folder (config.json + safetensors; floating weights in `dtype` if given).
    Runs save the EMA weights to OUT/NAME and the raw ones to OUT/raw/NAME (weights-only --resume reads them)."""
    (copy.deepcopy(module).to(dtype) if dtype else module).save_pretrained(folder)


def _pixels(images_BHWC_uint8: torch.Tensor) -> torch.Tensor:
    return images_BHWC_uint8.permute(0, 3, 1, 2).float() / 127.5 - 1


def _autocast(args, device: torch.device):
    """bf16 autocast with --bf16 on CUDA (this CPU runs bf16 slower than fp32, so it is off there)."""
    if args.bf16 and device.type != "cuda":
        print("--bf16 is used on CUDA only; training in fp32", file=sys.stderr)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16 and device.type == "cuda")


def _rebuild(cls, spec_class, spec: dict):
    return cls.from_spec(spec_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}))


# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------


def tokenizer_config(name: str | None, resolution: int) -> TokenizerConfig:
    """The named tokenizer config (default: the one for the data's image size), checked against it."""
    name = name or TOKENIZER_FOR_RESOLUTION.get(resolution)
    if name is None:
        raise ValueError(f"no default tokenizer config for {resolution} px images; build the data at "
                         f"{', '.join(map(str, TOKENIZER_FOR_RESOLUTION))} px or pass --config")
    if name not in TOKENIZER_CONFIGS:
        raise ValueError(f"unknown tokenizer config {name!r}; known: {', '.join(TOKENIZER_CONFIGS)}")
    config = TOKENIZER_CONFIGS[name]
    if config.resolution != resolution:
        raise ValueError(f"tokenizer config {name!r} is for {config.resolution} px images but the data has "
                         f"{resolution} px images")
    return config


@in_process_group
def train_tokenizer(args) -> None:
    """Reconstruction (L1 + MSE) + VQ loss on every image; dead codes are re-seeded from residuals."""
    with Run(args, "tokenizer") as run:
        data = load_training_set(args.data)
        device, generator = run.device, run.generator
        if run.spec:
            model = _rebuild(NVGTokenizer, TokenizerConfig, run.spec)
        elif args.resume:
            model = NVGTokenizer.from_pretrained(args.resume, subfolder="tokenizer", dtype=torch.float32)
        else:
            model = NVGTokenizer.from_spec(tokenizer_config(args.config, data.resolution))
        model.to(device).train()
        ema = copy.deepcopy(model).eval()
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
        run.track(dataclasses.asdict(model.spec), model=model, ema=ema, optimizer=opt)
        trained = run.procs.wrap(model)
        autocast = _autocast(args, device)
        for step in run.steps():
            idx_B = run.procs.shard(torch.randint(len(data.images), (args.batch_size,), generator=generator))
            flip_B = run.procs.shard(torch.rand(args.batch_size, generator=generator) < 0.5)
            flip_B &= torch.from_numpy(data.flip_ok[idx_B.numpy()])
            x_BCHW = _pixels(torch.from_numpy(data.images[idx_B.numpy()])).to(device)
            x_BCHW = torch.where(flip_B.to(device)[:, None, None, None], x_BCHW.flip(-1), x_BCHW)
            with autocast:
                recon_BCHW, vq_loss = trained(x_BCHW)
            recon_BCHW = recon_BCHW.float()
            l1, mse = (recon_BCHW - x_BCHW).abs().mean(), (recon_BCHW - x_BCHW).pow(2).mean()
            loss = l1 + mse + vq_loss
            optimise(opt, model, ema, loss, step, args)
            if step % args.refresh_every == 0 or step == args.steps - 1:
                _refresh_dead_codes(model, x_BCHW, generator, run.procs, reseed=step < args.steps * 0.8)
            if step % args.log_every == 0 or step == args.steps - 1:
                run.log(step, loss=loss.item(), l1=l1.item(), psnr=-10 * np.log10(max(mse.item() / 4, 1e-10)),
                        vq=vq_loss.item(), lr=opt.param_groups[0]["lr"])
            if run.end_of_step(step, lambda: (_save(ema, run.out / "tokenizer"), _save(model, run.out / "raw" / "tokenizer")),
                               args.save_every):
                break


@torch.no_grad()
def _refresh_dead_codes(model: NVGTokenizer, x_BCHW: torch.Tensor, generator: torch.Generator,
                        procs: Processes, reseed: bool) -> None:
    """Count code use on the (global) batch; unused codes get random cluster residuals of the main process's
    shard, sent to every process."""
    tokens = model.encode(x_BCHW)
    usage_V = torch.zeros(model.config.codebook_size, device=x_BCHW.device)
    residuals = []
    for stage, ids_BK in enumerate(tokens.ids):
        usage_V += torch.bincount(ids_BK.flatten(), minlength=len(usage_V))
        mean_BKC = cluster_mean(tokens.latent_BNC - tokens.canvases_BSNC[:, stage], tokens.labels_BSN[:, stage], 2**stage)
        residuals.append(mean_BKC.flatten(0, 1))
    dead_V = procs.sum_(usage_V) == 0
    if reseed and dead_V.any():
        pool_RC = torch.cat(residuals)
        pick = torch.randint(len(pool_RC), (int(dead_V.sum()),), generator=generator).to(pool_RC.device)
        model.quantize.embedding.weight[dead_V] = pool_RC[pick]
        procs.broadcast_(model.quantize.embedding.weight.data)


# --------------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def tokenize_dataset(tokenizer: NVGTokenizer, data: TrainingSet, device: torch.device,
                     batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Teacher-forcing targets for every image with a class (and its mirror where mirroring is allowed)."""
    keep = np.flatnonzero(data.label >= 0)
    rows = np.concatenate([keep, keep[data.flip_ok[keep]]])
    mirrored = np.arange(len(rows)) >= len(keep)
    parts = {"labels_BSN": [], "codes_BSN": [], "canvases_BSNC": [], "final_BNC": []}
    for start in range(0, len(rows), batch_size):
        chunk = slice(start, start + batch_size)
        images = np.stack([data.images[r, :, ::-1] if m else data.images[r] for r, m in zip(rows[chunk], mirrored[chunk])])
        tokens = tokenizer.encode(_pixels(torch.from_numpy(images)).to(device))
        for name in parts:
            parts[name].append(getattr(tokens, name))
    out = {k: torch.cat(v) for k, v in parts.items()}
    out["class_B"] = torch.from_numpy(data.label[rows]).to(device)
    return out


def cached_targets(tokenizer: NVGTokenizer, tokenizer_folder: Path, data_path: Path, data: TrainingSet,
                   procs: Processes) -> dict[str, torch.Tensor]:
    """tokenize_dataset, cached beside (or in) the dataset under a key of the tokenizer weights and the data
    (tokenizing the whole emoji set takes minutes on a 2-core CPU; every training run needs it). The main
    process writes the cache; the others wait and read it."""
    digest = hashlib.sha256((Path(tokenizer_folder) / "tokenizer" / "diffusion_pytorch_model.safetensors").read_bytes())
    data_path = Path(data_path)
    for part in (data_path / "index.json", data_path / "labels.npy") if data_path.is_dir() else (data_path,):
        digest.update(part.read_bytes())
    name = f"targets-{digest.hexdigest()[:16]}.pt"
    cache = data_path / name if data_path.is_dir() else data_path.with_name(f"{data_path.stem}.{name}")
    if procs.is_main and not cache.is_file():
        targets = tokenize_dataset(tokenizer, data, procs.device)
        torch.save({k: v.cpu() for k, v in targets.items()}, cache)
    procs.barrier()
    return {k: v.to(procs.device) for k, v in torch.load(cache, weights_only=True).items()}


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


class NVGObjective(torch.nn.Module):
    """nvg_loss as a module, so that DistributedDataParallel sees (and synchronises) the forward pass."""

    def __init__(self, model: NVGTransformer, **options):
        super().__init__()
        self.model, self.options = model, options

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator, shard: tuple[int, int]):
        return nvg_loss(self.model, batch["canvases_BSNC"], batch["final_BNC"], batch["labels_BSN"],
                        batch["codes_BSN"], batch["class_B"], generator, shard=shard, **self.options)


def _planned_grid(args, run: Run) -> int:
    """The latent grid of the generator about to be trained (checked against the tokenizer's before tokenizing)."""
    if run.spec:
        return run.spec["grid_size"]
    if args.resume:
        return NVGTransformer.load_config(args.resume, subfolder="transformer")["grid_size"]
    if args.config not in TRANSFORMER_CONFIGS:
        raise ValueError(f"unknown generator config {args.config!r}; known: {', '.join(TRANSFORMER_CONFIGS)}")
    return TRANSFORMER_CONFIGS[args.config].grid_size


def _generator_model(args, run: Run, targets: dict[str, torch.Tensor], num_classes: int) -> NVGTransformer:
    """The transformer to train: from the checkpoint being resumed, from a folder's weights, or new (with
    the canvas scale factors measured on these targets and the data's number of classes)."""
    if run.spec:
        return _rebuild(NVGTransformer, TransformerConfig, run.spec)
    if args.resume:
        model = NVGTransformer.from_pretrained(args.resume, subfolder="transformer", dtype=torch.float32)
        if args.structure_class_proj and not model.spec.use_structure_class_proj:
            model = with_config(model, use_structure_class_proj=True)
    else:
        scales = canvas_scale_factors(targets["canvases_BSNC"][:1024], targets["final_BNC"][:1024])
        model = NVGTransformer.from_spec(dataclasses.replace(
            TRANSFORMER_CONFIGS[args.config], scale_factors=scales, num_classes=num_classes,
            use_structure_class_proj=args.structure_class_proj))
    if model.spec.num_classes != num_classes:
        raise ValueError(f"the model in {args.resume} has {model.spec.num_classes} classes but the data has {num_classes}")
    return model


@in_process_group
def train_generator(args) -> None:
    """The NVG objective on the tokenizer's codes, class-balanced sampling, k random stages per image."""
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    with Run(args, "generator") as run:
        device, generator = run.device, run.generator
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
        tokenizer = NVGTokenizer.from_pretrained(args.tokenizer, subfolder="tokenizer", dtype=torch.float32).to(device)
        data = load_training_set(args.data)
        if tokenizer.spec.resolution != data.resolution:
            raise ValueError(f"the tokenizer in {args.tokenizer} is for {tokenizer.spec.resolution} px images but "
                             f"the data has {data.resolution} px images")
        grid = _planned_grid(args, run)
        if grid != tokenizer.spec.grid_size:
            raise ValueError(f"the generator's grid is {grid}x{grid} but the tokenizer in {args.tokenizer} makes "
                             f"{tokenizer.spec.grid_size}x{tokenizer.spec.grid_size} latents: pick matching configs "
                             "(emoji-f4 with emoji-s, emoji-f8 with emoji-s8)")
        targets = cached_targets(tokenizer, args.tokenizer, args.data, data, run.procs)
        model = _generator_model(args, run, targets, len(data.classes)).to(device).train()
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
        run.track(dataclasses.asdict(model.spec), model=model, ema=ema, optimizer=opt)
        objective = run.procs.wrap(NVGObjective(model, stages_per_sample=args.stages_per_sample or None,
                                                content=train_content, structure_stage_weights=args.structure_stage_weights,
                                                split_weight=args.split_weight))
        order_N = targets["class_B"].argsort()
        count_C = torch.bincount(targets["class_B"], minlength=model.spec.num_classes)
        offset_C, present_K = count_C.cumsum(0) - count_C, count_C.nonzero().flatten()
        shard = (run.procs.rank, run.procs.world)
        autocast = _autocast(args, device)

        def save() -> None:
            dtype = torch.float16 if args.half_weights else None
            _save(model, run.out / "raw" / "transformer", dtype)
            from .pipeline import MODEL_INDEX, NVGPipeline
            index = Path(args.resume or "") / MODEL_INDEX  # a model folder's sampling defaults carry over
            options = json.loads(index.read_text()) if args.resume and index.is_file() else {}
            NVGPipeline(tokenizer, copy.deepcopy(ema).to(dtype) if dtype else ema, list(data.classes),
                        options.get("default_options"), run.out.resolve().name,
                        transfer_options=options.get("transfer_options")).save_pretrained(run.out)
            write_model_card(run, data, args, args.resume if options else None)

        for step in run.steps():
            # Classes evenly (among those with images), then an image of the class; this process's shard.
            class_B = present_K[torch.randint(len(present_K), (args.batch_size,), generator=generator).to(device)]
            u_B = torch.rand(args.batch_size, generator=generator).to(device)
            pick_B = run.procs.shard(order_N[offset_C[class_B] + (u_B * count_C[class_B]).long()])
            with autocast:
                loss, parts = objective({k: v[pick_B] for k, v in targets.items()}, generator, shard)
            optimise(opt, model, ema, loss, step, args)
            if step % args.log_every == 0 or step == args.steps - 1:
                run.log(step, **{k: v.item() for k, v in parts.items()}, lr=opt.param_groups[0]["lr"])
            if run.end_of_step(step, save, args.save_every):
                break


def write_model_card(run: Run, data: TrainingSet, args, options_from: Path | None) -> None:
    """A model card stub for a trained folder: metadata, the data, the classes, the command, the last losses
    and where the sampling defaults came from (`options_from`: the resumed model folder, or the authors')."""
    lines = run.log_path.read_text().splitlines() if run.log_path.is_file() else []
    last = lines[-1] if lines else "{}"
    launcher = f"torchrun --nproc_per_node {run.procs.world} -m nvg_core.cli" if run.procs.world > 1 else "nvg"
    command = " ".join([launcher, *map(shlex.quote, sys.argv[1:])]) if sys.argv[1:2] == ["train"] else \
        f"{launcher} train generator --data {args.data} --tokenizer {args.tokenizer} --out {args.out} --steps {args.steps}"
    parameters = sum(p.numel() for p in run.tracked["model"].parameters())
    config = f"from {args.resume}" if args.resume else args.config
    defaults = f"those of {options_from}" if options_from else "the authors' ImageNet schedules"
    classes = ", ".join(data.classes[:50]) + (f" and {len(data.classes) - 50} more" if len(data.classes) > 50 else "")
    card = f"""---
library_name: diffusers
pipeline_tag: unconditional-image-generation
tags:
  - next-visual-granularity
  - nvg
  - class-conditional
  - nvg-studio
---

# {run.out.resolve().name}

An NVG (Next Visual Granularity) class-conditional model trained with NVG Studio {metadata.version("nvg-studio")}
on {date.today().isoformat()}. Open it with `python app.py --model {run.out}` or
`NVGPipeline.from_pretrained("{run.out}")`.

## Data

Trained on {data.source}, {data.resolution} px, {len(data.classes)} classes: {classes}.

## Training

- tokenizer: `{args.tokenizer}`
- generator: {parameters:,} parameters, config `{config}`
- {args.steps} steps planned, global batch {args.batch_size}, {run.procs.world} process(es) on {run.device.type}
- command: `{command}`
- last log line: `{last}`

## Limitations

Not evaluated: `nvg eval` measures models of the emoji-32 classes only. The sampling defaults are {defaults};
to store others, set `pipe.default_options` and `pipe.save_pretrained(folder)`.
"""
    (run.out / "MODEL_CARD.md").write_text(card)
