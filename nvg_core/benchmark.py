"""Sampling benchmark: per-stage and whole-image latency, peak memory, FLOPs and achieved GFLOP/s.

Used by `nvg bench` and bench/bench_generate.py. Models are a loaded folder (--model) or a registered
config with random weights (--config), so the official sizes can be measured without their weights.
"""

from __future__ import annotations

import resource
import time
from dataclasses import replace
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from .sampling import SamplingOptions, iter_stages, official_options


def _models(args):
    """Transformer, tokenizer, device and sampling defaults (the folder's, or the authors' for random weights)."""
    from .official import load_pipeline
    from .pipeline import default_device
    if args.model:
        pipe = load_pipeline(args.model, device=args.device)
        return pipe.transformer, pipe.tokenizer, pipe.device, pipe.default_options
    from .configs import random_models
    device = torch.device(args.device) if args.device else default_device()
    transformer, tokenizer = random_models(args.config)
    return transformer.to(device).eval(), tokenizer.to(device).eval(), device, official_options(transformer.spec.num_stages)


def seconds_of(action: Callable[[], object], repeats: int, reduce: Callable = min) -> float:
    """`reduce` (min, or statistics.median) of the wall seconds of `repeats` calls, after one warm-up call."""
    action()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - start)
    return reduce(seconds)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so wall-clock times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def _peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory since the last reset, or the process's peak resident memory on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_once(transformer, tokenizer, batch: int, options: SamplingOptions, device) -> tuple[list[float], float]:
    """Seconds per stage and for decoding, for one batch."""
    classes = torch.arange(batch) % transformer.config.num_classes
    stage_times, start = [], time.perf_counter()
    for stage in iter_stages(transformer, tokenizer, classes, torch.Generator().manual_seed(0), options):
        sync(device)
        now = time.perf_counter()
        stage_times.append(now - start)
        start = now
        canvas = stage.canvas_BNC
    with torch.inference_mode():
        tokenizer.decode_latent(canvas)
    sync(device)
    return stage_times, time.perf_counter() - start


def run(args) -> None:
    """Print the benchmark table."""
    if args.threads:
        torch.set_num_threads(args.threads)
    transformer, tokenizer, device, defaults = _models(args)
    defaults = replace(defaults, flow_steps=args.flow_steps or defaults.flow_steps)
    print(f"model: {args.model or args.config + ' (random weights)'}; device {device}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; fp32; flow steps {defaults.flow_steps}")
    for guidance in (False, True):
        options = defaults if guidance else replace(defaults, content_guidance=1.0, structure_guidance=1.0)
        for batch in args.batch_sizes:
            with FlopCounterMode(display=False) as counter:
                run_once(transformer, tokenizer, batch, options, device)  # warm-up and FLOP count
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            runs = [run_once(transformer, tokenizer, batch, options, device) for _ in range(args.repeats)]
            stage_s = [min(r[0][i] for r in runs) for i in range(len(runs[0][0]))]
            decode_s = min(r[1] for r in runs)
            total_s = sum(stage_s) + decode_s
            flops = counter.get_total_flops()
            print(f"\nguidance {'on (the default schedules)' if guidance else 'off'}, batch {batch}: "
                  f"{total_s:.3f} s per batch, {total_s / batch:.3f} s per image, peak memory {_peak_memory_mb(device):.0f} MB")
            print("  per stage (s): " + " ".join(f"{t:.3f}" for t in stage_s) + f" | decode {decode_s:.3f}")
            print(f"  {flops / batch / 1e9:.1f} GFLOP per image, {flops / total_s / 1e9:.1f} GFLOP/s achieved")
