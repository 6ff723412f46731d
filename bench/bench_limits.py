"""The cost estimate against what a run takes: `python bench/bench_limits.py [--batches 1 8 64 256] [--model DIR]`.

For each batch size, a fresh subprocess loads the model (default: the bundled one), warms up with one
image, then runs one generation of the batch (the model's default options, seeds 0..B-1) and reports its
wall time and its peak resident memory above the memory held before the run (ru_maxrss after minus RSS
before), beside nvg_core.limits.estimate_cost for the same run. Run it on a quiet machine: the times
are the device's, the estimate is the model's FLOPs at DEVICE_FLOPS.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def one_run(model: str | None, batch: int) -> dict:
    """Measure one run of `batch` images in this process (called in a fresh subprocess)."""
    sys.path.insert(0, str(ROOT))
    import torch

    from nvg_core.pipeline import NVGPipeline

    pipe = NVGPipeline.from_pretrained(model, device="cpu")
    pipe.generate(["0"], seeds=[0])  # warm-up: kernels, allocator
    before = rss_bytes()
    start = time.perf_counter()
    pipe.generate([0] * batch, seeds=list(range(batch)))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    cost = pipe.run_cost(batch)
    return {"batch": batch, "seconds": seconds, "peak_bytes": peak, "estimated_seconds": cost.seconds,
            "estimated_peak_bytes": cost.peak_bytes, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--model", default=None, help="a model folder (default: the bundled model)")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the subprocess's own run
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_run(args.model, args.one)))
        return
    print("batch  measured s  estimated s  measured peak MB  estimated peak MB")
    for batch in args.batches:
        command = [sys.executable, __file__, "--one", str(batch)] + (["--model", args.model] if args.model else [])
        row = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"{batch:5d}  {row['seconds']:10.2f}  {row['estimated_seconds']:11.2f}  "
              f"{row['peak_bytes'] / 2**20:16.0f}  {row['estimated_peak_bytes'] / 2**20:17.0f}", flush=True)
    print(f"({row['threads']} torch threads)")


if __name__ == "__main__":
    main()
