"""`nvg sample`: many images of many classes, split among processes and written to disk as they are made.

    nvg sample --per-class 50 --out samples/emoji                       # samples/emoji.npz
    torchrun --nproc_per_node 8 -m nvg_core.cli sample --model DIR --per-class 50 --out samples/d16

Image i has class classes[i % C] (every class once, then again, as the authors' eval_gen.py orders them)
and seed `--seed` + i. Images are made in batches of --batch-size: batch j, images j*B .. (j+1)*B - 1, is
made by process j % world and written as OUT.shards/batch_J.npz. So every image is made in the same batch
whatever the number of processes, and the output is the same bit for bit on 1 or N processes (on one device
type). It is not the same at another --batch-size: sampling is not batch-invariant bit for bit (a batched
matmul rounds differently, which can flip a sampled code). A run started again with the same arguments
skips the batches on disk. Once every batch is there, the main process writes OUT.npz: arr_0 (uint8,
N x H x W x 3, the format the ADM evaluation suite reads), labels and seeds, streamed batch by batch so
that memory stays flat whatever N; then the shards are removed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from .distributed import Processes, in_process_group
from .images import to_pil, to_uint8
from .recipe import attach, save_png, weights_hash
from .seeds import MAX_SEED


@dataclasses.dataclass(frozen=True)
class Plan:
    """Which images a run makes: classes (ids) cycled per_class times, seeds from `seed`, in batches."""

    classes: tuple[int, ...]
    per_class: int
    batch_size: int
    seed: int

    def __post_init__(self) -> None:
        if self.per_class < 1 or self.batch_size < 1 or not self.classes:
            raise ValueError("--per-class and --batch-size must be at least 1, with at least one class")
        if not 0 <= self.seed or self.seed + self.total - 1 > MAX_SEED:
            raise ValueError(f"seeds {self.seed}..{self.seed + self.total - 1} must lie in 0..{MAX_SEED}")

    @property
    def total(self) -> int:
        return self.per_class * len(self.classes)

    @property
    def num_batches(self) -> int:
        return -(-self.total // self.batch_size)

    def batch(self, j: int) -> tuple[list[int], list[int]]:
        """(class ids, seeds) of batch j."""
        indices = range(j * self.batch_size, min((j + 1) * self.batch_size, self.total))
        return [self.classes[i % len(self.classes)] for i in indices], [self.seed + i for i in indices]


def shard_path(shards: Path, j: int) -> Path:
    return shards / f"batch_{j:06d}.npz"


def run_description(pipe, plan: Plan, options) -> dict:
    """What the shards on disk were made with: a run resumes only when this is the same."""
    return {"model": pipe.name, "weights": weights_hash(pipe), "plan": dataclasses.asdict(plan),
            "options": dataclasses.asdict(options.explicit(pipe.num_stages))}


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as file:
        write(file)
    os.replace(tmp, path)


def merge(shards: Path, plan: Plan, out: Path) -> None:
    """OUT.npz from the shards, one batch in memory at a time: arr_0 (N, H, W, 3) uint8, labels, seeds."""
    height, width = np.load(shard_path(shards, 0))["images"].shape[1:3]
    labels, seeds = [], []

    def write(file) -> None:
        with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open("arr_0.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_2_0(member, {"descr": "|u1", "fortran_order": False,
                                                              "shape": (plan.total, height, width, 3)})
                for j in range(plan.num_batches):
                    with np.load(shard_path(shards, j)) as shard:
                        member.write(np.ascontiguousarray(shard["images"], np.uint8).tobytes())
                        labels.append(shard["labels"])
                        seeds.append(shard["seeds"])
            for name, values in (("labels", labels), ("seeds", seeds)):
                buffer = io.BytesIO()
                np.save(buffer, np.concatenate(values).astype(np.int64))
                archive.writestr(f"{name}.npy", buffer.getvalue())

    _write_atomic(out, write)


@in_process_group
def run(args) -> None:
    """`nvg sample` (see the module docstring); under torchrun, in every process."""
    from tqdm import tqdm

    from .cli import sampling_overrides
    from .official import load_pipeline
    processes = Processes.start(args.device)
    if args.bf16 and processes.device.type != "cuda":
        raise ValueError("--bf16 runs on CUDA only (bf16 is slower than fp32 on CPUs)")
    pipe = load_pipeline(args.model, device=processes.device)
    classes = tuple(pipe.class_id(c) for c in args.classes) if args.classes else tuple(range(len(pipe.class_names)))
    plan = Plan(classes, args.per_class, args.batch_size, args.seed)
    options = dataclasses.replace(pipe.default_options, **sampling_overrides(args, pipe.num_stages))
    out = args.out.with_suffix(".npz")
    shards = args.out.with_name(args.out.name + ".shards")
    description = json.loads(json.dumps(run_description(pipe, plan, options)))  # as it reads back
    if processes.is_main:
        shards.mkdir(parents=True, exist_ok=True)
        kept = shards / "run.json"
        if kept.exists() and json.loads(kept.read_text()) != description:
            raise ValueError(f"{shards} holds batches of another run (model, classes, seeds or options differ): "
                             "remove it, or use another --out")
        kept.write_text(json.dumps(description))
    processes.barrier()

    mine = [j for j in range(processes.rank, plan.num_batches, processes.world) if not shard_path(shards, j).exists()]
    if processes.is_main:
        on_disk = sum(shard_path(shards, j).exists() for j in range(plan.num_batches))
        print(f"{plan.total} images of {len(classes)} classes in {plan.num_batches} batches of {plan.batch_size}, "
              f"{processes.world} process{'es' if processes.world > 1 else ''}"
              + (f"; {on_disk} batches already on disk" if on_disk else ""), flush=True)
    started = time.monotonic()
    bar = tqdm(total=sum(len(plan.batch(j)[0]) for j in mine), unit="img", disable=not processes.is_main,
               desc=f"process 0 of {processes.world}")
    for j in mine:
        class_ids, seeds = plan.batch(j)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.bf16):
            result = pipe.generate(class_ids, seeds=seeds, options=options, action="sample")
        images = to_uint8(result.images)
        if args.png:
            for image, class_id, seed in zip(attach(to_pil(result.images), result.recipes), class_ids, seeds):
                folder = args.png / pipe.class_names[class_id]
                folder.mkdir(parents=True, exist_ok=True)
                save_png(image, folder / f"{seed - plan.seed:06d}.png")
        _write_atomic(shard_path(shards, j), lambda file: np.savez(
            file, images=images, labels=np.asarray(class_ids), seeds=np.asarray(seeds)))
        bar.update(len(seeds))
        if (time.monotonic() - started) / 60 >= args.max_minutes:
            break
    bar.close()
    processes.barrier()
    if not processes.is_main:
        return
    missing = [j for j in range(plan.num_batches) if not shard_path(shards, j).exists()]
    if missing:
        print(f"stopped with {len(missing)} of {plan.num_batches} batches to make: run the same command again to "
              f"go on", flush=True)
        return
    merge(shards, plan, out)
    shutil.rmtree(shards)
    print(f"saved {out}: {plan.total} images{f', PNGs in {args.png}' if args.png else ''}", flush=True)
