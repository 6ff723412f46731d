"""GPU check of the official d16 layout at the paper's settings: fp32 and bf16 autocast, batch 1 / 16 / 64.

Usage (one GPU, under 8 minutes on an H100; prints as it goes):
    python bench/gpu_check.py [--config official-d16] [--batch-sizes 1 16 64] [--compile]

Random weights of the authors' architecture (no download), their sampling settings (official_options:
25 structure flow steps, both guidances). For each precision and batch size: images per second (after one
warm-up batch), peak GPU memory, and for bf16 how far its outputs are from fp32 on the same seeds (share of
identical structure maps and codes per stage, mean absolute pixel difference). Random weights make the
difference an upper-bound check of the arithmetic, not a quality figure. fp32 keeps TF32 off (true fp32);
SDPA picks its own kernel (flash attention for bf16). --compile also times compiled blocks
(NVGTransformer.compile_blocks; keep it off on GPUs unless this script shows it helps).
"""

from __future__ import annotations

import argparse
import time

import torch

from nvg_core.configs import random_models
from nvg_core.sampling import generate, official_options


def run(transformer, tokenizer, batch: int, dtype: torch.dtype | None, seed: int = 0):
    """One batch (one CPU generator per image, so every image is the same at any batch size and precision)."""
    classes = torch.arange(batch) % transformer.spec.num_classes
    generators = [torch.Generator().manual_seed(seed + b) for b in range(batch)]
    with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
        return generate(transformer, tokenizer, classes, generators, official_options(transformer.spec.num_stages))


def timed(transformer, tokenizer, batch: int, dtype: torch.dtype | None):
    run(transformer, tokenizer, batch, dtype)  # warm-up (kernels, autotuning, compilation)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = run(transformer, tokenizer, batch, dtype)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return result, seconds, torch.cuda.max_memory_allocated() / 2**30


def difference(a, b) -> str:
    """How far result b is from result a: identical maps and codes per stage, mean |pixel| difference."""
    maps = (a.labels_BSN == b.labels_BSN).all(-1).float().mean(0).tolist()
    codes = [(x == y).float().mean().item() for x, y in zip(a.ids, b.ids)]
    pixels = (a.images.float() - b.images.float()).abs().mean().item() * 127.5
    return (f"identical maps per stage {' '.join(f'{m:.2f}' for m in maps)}; identical codes per stage "
            f"{' '.join(f'{c:.2f}' for c in codes)}; mean |pixel difference| {pixels:.2f} of 255")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="official-d16")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--compile", action="store_true", help="also time compiled blocks (NVGTransformer.compile_blocks)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check needs a GPU")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    transformer, tokenizer = random_models(args.config)
    transformer, tokenizer = transformer.cuda().eval(), tokenizer.cuda().eval()
    print(f"{args.config} (random weights) on {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"the authors' settings (25 flow steps, both guidances)", flush=True)
    variants = [("fp32", None, False), ("bf16 autocast", torch.bfloat16, False)]
    if args.compile:
        variants += [("bf16 autocast + torch.compile", torch.bfloat16, True)]
    reference = {}
    for name, dtype, compiled in variants:
        if compiled:
            transformer.compile_blocks()
        for batch in args.batch_sizes:
            result, seconds, peak = timed(transformer, tokenizer, batch, dtype)
            line = f"{name:32s} batch {batch:3d}: {batch / seconds:7.3f} images/s ({seconds:7.2f} s a batch), peak {peak:6.2f} GiB"
            if dtype is None:
                reference[batch] = result
            elif batch in reference:
                line += "\n    vs fp32: " + difference(reference[batch], result)
            print(line, flush=True)


if __name__ == "__main__":
    main()
