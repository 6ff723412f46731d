"""Bounds on the work one run can ask for, checked before any compute, and what a run is estimated to cost.

Every run takes its size from a person: images, flow steps, the sampling numbers, a recipe read from a PNG.
`Limits` says how much one run may ask for; the library and `nvg` use DEFAULT_LIMITS (they run on the
person's own machine, so these only refuse what no honest run asks for or what would not fit in memory),
and a server lowers them and adds a time budget (the web app: app/handlers.py SERVER_LIMITS):

    pipe.generate(["fruit"] * 8, seeds=range(8), limits=Limits(max_images=8, max_seconds=60))
    estimate_cost(pipe.transformer.spec, pipe.tokenizer.spec, 64, flow_steps=25, device="cpu")  # say it first

Bounds that hold for every run whatever its Limits (nvg_core refuses more in SamplingOptions and in the
recipe reader): MAX_FLOW_STEPS flow steps, MAX_IMAGES images, MAX_ARRAY_BYTES per stored array, finite
numbers only. A run that passes its time budget stops between two network passes with TimeBudgetExceeded.

The cost is an estimate from the model's sizes: FLOPs of every network pass (content passes per stage,
structure-flow steps per split, both guided: twice the batch), seconds at a nominal speed per device type
(DEVICE_FLOPS), and the peak memory beyond the weights: the larger of sampling's transient tensors (a
block's activations and the last stage's code logits with their sorting) and the decoder's first feature
maps. bench/bench_limits.py compares the estimate with measured time and peak memory (on the bundled
model the estimate is above the measured peak).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

MAX_IMAGES = 1024  # images in one run: a recipe's run is made again whole (batched sampling is not batch-invariant)
MAX_FLOW_STEPS = 1000  # structure flow steps (the authors use 25; the bundled model 25)
MAX_ARRAY_BYTES = 1 << 26  # a stored array (recipes) larger than this unpacked is refused
# Nominal fp32 speeds for the time estimate, FLOP/s: this project's 2-core CPU reaches about 150 GFLOP/s at
# peak and about 60 on a whole NVG run (bench/bench_limits.py); GPUs are taken at a conservative share of
# their peak.
DEVICE_FLOPS = {"cpu": 60e9, "cuda": 40e12, "mps": 5e12}


class LimitError(ValueError):
    """A run asks for more than its Limits allow; the message names the bound."""


class TimeBudgetExceeded(TimeoutError):
    """A run stopped because it passed its time budget (Limits.max_seconds)."""


@dataclass(frozen=True)
class RunCost:
    """What one run is estimated to cost on its device."""

    num_images: int
    flops: float
    seconds: float  # at DEVICE_FLOPS for the device type
    peak_bytes: int  # transient memory beyond the weights
    device: str

    def __str__(self) -> str:
        return (f"{self.num_images} image{'s' if self.num_images != 1 else ''}: about {_duration(self.seconds)} and "
                f"{_size(self.peak_bytes)} of memory on {self.device} (estimated)")


def estimate_cost(transformer: Any, tokenizer: Any, num_images: int, flow_steps: int,
                  device: str | torch.device = "cpu", guided: bool = True) -> RunCost:
    """The estimated cost of one run of `num_images` images from the networks' configs (TransformerConfig and
    TokenizerConfig, or anything with their fields); `guided` counts every pass twice (class and null class)."""
    S, N, V = transformer.num_stages, transformer.grid_size**2, transformer.codebook_size
    g = 2 if guided else 1

    def block_flops(tokens: int, width: int) -> float:  # linear1, linear2, attention (QK^T and AV)
        mlp = int(width * transformer.mlp_ratio)
        return 2 * tokens * width * (3 * width + mlp) + 2 * tokens * (width + mlp) * width + 4 * tokens**2 * width

    content = transformer.depth * block_flops(N + 1, transformer.hidden) + 2 * N * transformer.latent_channels * V
    structure_tokens = 2 * N + 1 if transformer.structure_layout == "official" else N + 1
    structure = transformer.depth * block_flops(structure_tokens, transformer.structure_hidden)
    flops = num_images * g * (S * content + max(S - 2, 0) * flow_steps * structure)

    mlp = int(transformer.hidden * transformer.mlp_ratio)
    block_bytes = 4 * (N + 1) * (8 * transformer.hidden + 3 * mlp)  # input, qkv + mlp, rotated q/k, attention, output
    logits_bytes = 4 * N * V * (g + 7)  # logits (class and null), guided, softmax, sort (values, int64 order), cumsum
    decoder_bytes = 4 * tokenizer.resolution**2 * tokenizer.base_channels * tokenizer.channel_mult[0] * 4
    peak = num_images * max(g * block_bytes + logits_bytes, decoder_bytes)  # sampling, then decoding
    device = torch.device(device).type
    return RunCost(num_images, float(flops), flops / DEVICE_FLOPS.get(device, DEVICE_FLOPS["cpu"]), int(peak), device)


def available_memory(device: str | torch.device = "cpu") -> int | None:
    """Bytes a new run can use on the device now: free CUDA memory, MPS's recommended budget less what is
    allocated, or the system's MemAvailable on a CPU (Linux); None where it cannot be read."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@dataclass(frozen=True)
class Limits:
    """How much one run may ask for. The defaults are the library's (DEFAULT_LIMITS); a server lowers them.

    max_images: images in the run (a batch). max_flow_steps: structure flow steps (at most MAX_FLOW_STEPS).
    max_seconds: the run's time budget from its start, None for none. memory_share: the share of the
    device's available memory (available_memory, read when the run starts) that the run's estimated peak
    may take; None skips the memory check.
    """

    max_images: int = MAX_IMAGES
    max_flow_steps: int = MAX_FLOW_STEPS
    max_seconds: float | None = None
    memory_share: float | None = 0.9

    def __post_init__(self):
        if not (_whole(self.max_images) and 1 <= self.max_images <= MAX_IMAGES):
            raise ValueError(f"max_images must be a whole number in [1, {MAX_IMAGES}], got {self.max_images!r}")
        if not (_whole(self.max_flow_steps) and 1 <= self.max_flow_steps <= MAX_FLOW_STEPS):
            raise ValueError(f"max_flow_steps must be a whole number in [1, {MAX_FLOW_STEPS}], got {self.max_flow_steps!r}")
        if self.max_seconds is not None and not (_real(self.max_seconds) and 0 < self.max_seconds < math.inf):
            raise ValueError(f"max_seconds must be a positive number of seconds or None, got {self.max_seconds!r}")
        if self.memory_share is not None and not (_real(self.memory_share) and 0 < self.memory_share <= 1):
            raise ValueError(f"memory_share must be in (0, 1] or None, got {self.memory_share!r}")

    def check(self, transformer: Any, tokenizer: Any, num_images: int, flow_steps: int,
              device: str | torch.device) -> RunCost:
        """The run's estimated cost, or a LimitError naming the bound it passes: images, flow steps, or an
        estimated peak over memory_share of the memory available on the device."""
        if num_images > self.max_images:
            raise LimitError(f"the run has {num_images} images; the limit is {self.max_images} images per run")
        if flow_steps > self.max_flow_steps:
            raise LimitError(f"the run uses {flow_steps} flow steps; the limit is {self.max_flow_steps}")
        cost = estimate_cost(transformer, tokenizer, num_images, flow_steps, device)
        free = None if self.memory_share is None else available_memory(device)
        if free is not None and cost.peak_bytes > self.memory_share * free:
            raise LimitError(f"the run of {num_images} images needs about {_size(cost.peak_bytes)} of memory; "
                             f"{_size(free)} is available on {cost.device} and a run may take "
                             f"{self.memory_share:.0%} of it: ask for fewer images")
        return cost

    def deadline(self) -> Deadline | None:
        """The deadline of a run starting now (None: no time budget)."""
        return None if self.max_seconds is None else Deadline.after(self.max_seconds)



@dataclass(frozen=True)
class Deadline:
    """When a run must end: `seconds` after it started, at time.monotonic() == `at`."""

    seconds: float
    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(seconds, time.monotonic() + seconds)

    def check(self, where: str) -> None:
        """Raise TimeBudgetExceeded once the deadline has passed; `where` says how far the run got."""
        if time.monotonic() > self.at:
            raise TimeBudgetExceeded(f"the run was stopped at {where}: it passed its time budget of "
                                     f"{self.seconds:g} s; ask for fewer images or flow steps")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _size(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.1f} GB" if num_bytes >= 2**30 else f"{num_bytes / 2**20:.0f} MB"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


DEFAULT_LIMITS = Limits()
